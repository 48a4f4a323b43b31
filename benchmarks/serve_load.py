"""Load on `emolab serve`, side by side with the server a user would write in an afternoon.

    python benchmarks/serve_load.py --run runs/emotion-minilm --int8 runs/emotion-minilm/exports/onnx-int8 \
        --requests 400 --rounds 3 --soak-minutes 10 --face-run runs/fer2013-reference \
        --out benchmarks/results/serve-load.md

Three servers run as separate processes on free 127.0.0.1 ports: a **naive** FastAPI app (a sync ``def``
endpoint calling the fp32 PyTorch model once per request, as in a tutorial), ``emolab serve RUN`` (fp32,
micro-batched) and ``emolab serve`` of the ONNX int8 export. For each concurrency level and round the same
``--requests`` requests (texts of the run's test split) go to each server in turn (the order rotates per
round); requests/s and p50 / p95 / p99 latency are reported as medians over the rounds. Then every test
example is sent to the int8 server and compared with ``emolab predict`` on the same export (argmax and
scores) and with the fp32 run's saved predictions; a soak at concurrency 16 records errors and the server's
resident memory at start and end; a face run served the same way is loaded at concurrency 8. Every loop is
bounded (a request count or a deadline) and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from record import Record

ROOT = Path(__file__).resolve().parents[1]


# --- the naive server ------------------------------------------------------------------------------------


def naive_app(run: str):
    """What a user writes first: FastAPI, a sync endpoint, one model call per request."""
    from fastapi import FastAPI

    from emolab.models import load_model

    model = load_model(run)
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: dict):
        probs = model.predict_proba([body["inputs"]])[0]
        return [[{"label": n, "score": float(p)} for n, p in sorted(zip(model.labels.names, probs),
                                                                       key=lambda x: -x[1])]]

    return app


# --- servers as processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, args: list[str], predict_path: str, ready_path: str):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.predict_url = self.url + predict_path
        self.log = open(f"/tmp/serve-load-{name}.log", "w")
        self.proc = subprocess.Popen([sys.executable, *args, "--port", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=ROOT)
        import httpx

        deadline = time.time() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: see /tmp/serve-load-{name}.log")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.5)

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("VmRSS"))) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# --- the load generator ----------------------------------------------------------------------------------


async def _post(reader, writer, host: str, path: str, payload: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection (a load generator light enough to leave the cores to
    the servers: httpx's client pool spent more CPU than the int8 model at 64 connections)."""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(ln.split(":", 1)[1]) for ln in lines[1:] if ln.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def _load(url: str, bodies: list, concurrency: int, *, deadline: float | None = None):
    """Send ``bodies`` (cycled until ``deadline`` when given) over ``concurrency`` kept-alive connections."""
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    payloads = [json.dumps(b).encode() for b in bodies]
    latencies, errors, answers = [], 0, {}
    next_index = 0

    async def worker():
        nonlocal errors, next_index
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while True:
                if deadline is not None and time.perf_counter() > deadline:
                    return
                if deadline is None and next_index >= len(payloads):
                    return
                i = next_index % len(payloads)
                next_index += 1
                start = time.perf_counter()
                try:
                    status, body = await _post(reader, writer, parts.netloc, parts.path, payloads[i])
                    ok = status == 200
                    if ok and deadline is None:
                        answers[i] = json.loads(body)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                latencies.append(time.perf_counter() - start)
                errors += not ok
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"requests": len(lat), "errors": errors, "rps": len(lat) / wall,
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "p99": float(np.percentile(lat, 99)), "answers": answers}


def load(url, bodies, concurrency, **kw):
    return asyncio.run(_load(url, bodies, concurrency, **kw))


# --- the benchmark ---------------------------------------------------------------------------------------


def test_texts(run: str) -> tuple[list[str], np.ndarray]:
    from emolab.data import load_dataset
    from emolab.rundir import open_run

    reader = open_run(run)
    test = load_dataset(reader.config.data, reader.config.seed).split("test")
    saved = reader.predictions("test")
    return list(test.inputs), saved.probs


def face_bodies(run: str, n: int) -> list[dict]:
    from PIL import Image

    from emolab.data import load_dataset
    from emolab.rundir import open_run

    reader = open_run(run)
    faces = load_dataset(reader.config.data, reader.config.seed).split("test").inputs[:n]
    out = []
    for face in faces:
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, "PNG")
        out.append({"inputs": base64.b64encode(buf.getvalue()).decode()})
    return out


def table(rows: list[dict], baseline: str = "naive") -> str:
    lines = ["| concurrency | server | requests/s | p50 ms | p95 ms | p99 ms | errors | vs " + baseline + " |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['server']} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | "
                     f"{r['p99']:.0f} | {r['errors']} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the fp32 run (runs/emotion-minilm)")
    ap.add_argument("--int8", required=True, help="its ONNX int8 export (emolab export RUN --format onnx --int8)")
    ap.add_argument("--int8-before", default=None,
                    help="another int8 export served beside it (e.g. the dynamic one that ran one text at a time)")
    ap.add_argument("--no-naive", action="store_true", help="leave the naive server out (ratios then against "
                                                            "the first server left)")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--soak-minutes", type=float, default=0.0)
    ap.add_argument("--face-run", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--naive-server", default=None, help=argparse.SUPPRESS)  # internal: run the naive server
    ap.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive_server:
        import uvicorn

        uvicorn.run(naive_app(args.naive_server), host="127.0.0.1", port=args.port, log_level="warning")
        return
    record = Record()
    texts, fp32_probs = test_texts(args.run)
    rng = np.random.default_rng(0)
    bodies = [{"inputs": texts[i]} for i in rng.choice(len(texts), size=args.requests, replace=False)]
    me = [str(Path(__file__).relative_to(ROOT))]
    specs = {
        "naive (sync FastAPI, fp32 PyTorch)": ("naive", [*me, "--naive-server", args.run, "--run", args.run,
                                                         "--int8", args.int8], "/predict", "/health"),
        "emolab serve fp32": ("fp32", ["-m", "emolab.cli", "serve", f"m={args.run}"], "/v1/models/m/predict",
                              "/ready"),
        "emolab serve ONNX int8": ("int8", ["-m", "emolab.cli", "serve", f"m={args.int8}"], "/v1/models/m/predict",
                                   "/ready"),
    }
    if args.int8_before:
        specs["emolab serve ONNX int8 (before)"] = ("int8-before", ["-m", "emolab.cli", "serve", f"m={args.int8_before}"],
                                                    "/v1/models/m/predict", "/ready")
    if args.no_naive:
        specs.pop("naive (sync FastAPI, fp32 PyTorch)")
    servers = {name: Server(*spec) for name, spec in specs.items()}
    notes = []
    figures = {"requests": args.requests, "rounds": args.rounds, "servers": list(servers), "limits": {}}
    try:
        for s in servers.values():  # warm-up: first calls build caches
            load(s.predict_url, bodies[:16], 4)
        rows = []
        names = list(servers)
        for c in (int(x) for x in args.concurrency.split(",")):
            per: dict[str, list[dict]] = {n: [] for n in names}
            for r in range(args.rounds):
                for n in names[r % len(names):] + names[:r % len(names)]:
                    res = load(servers[n].predict_url, bodies, c)
                    per[n].append(res)
                    print(f"c={c} round {r + 1} {n}: {res['rps']:.1f} req/s p99 {res['p99']:.0f} ms "
                          f"errors {res['errors']}", flush=True)
            naive = float(np.median([x["rps"] for x in per[names[0]]]))
            for n in names:
                med = {k: float(np.median([x[k] for x in per[n]])) for k in ("rps", "p50", "p95", "p99")}
                rows.append({"concurrency": c, "server": n, **med, "errors": sum(x["errors"] for x in per[n]),
                             "ratio": med["rps"] / naive})
        figures["rows"] = rows

        # the in-process limit of each int8 export on the same texts (the servers idle meanwhile): its best
        # of batch 1 and batch 32, medians over the rounds; served req/s are compared with it below
        from emolab.models import load_model

        request_texts = [b["inputs"] for b in bodies]
        for n, folder in [("emolab serve ONNX int8", args.int8), ("emolab serve ONNX int8 (before)", args.int8_before)]:
            if not folder:
                continue
            model = load_model(folder)
            model.predict_proba(request_texts[:32], batch_size=32)
            best = {}
            for b in (1, 32):
                rates = []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    model.predict_proba(request_texts, batch_size=b)
                    rates.append(len(request_texts) / (time.perf_counter() - t0))
                best[b] = float(np.median(rates))
            b = max(best, key=best.get)
            served = {r["concurrency"]: r for r in rows if r["server"] == n}
            top = max(served.values(), key=lambda r: r["rps"])
            figures["limits"][n] = {"texts_per_s_by_batch": best, "best_batch": b,
                                    "served_concurrency": top["concurrency"], "served_rps": top["rps"]}
            notes.append(f"- {n}: in-process limit **{best[b]:.1f} texts/s** at batch {b} (batch 1: {best[1]:.1f}, "
                         f"batch 32: {best[32]:.1f}; the same {len(request_texts)} texts, medians of {args.rounds}); "
                         f"served at concurrency {top['concurrency']}: {top['rps']:.1f} req/s = "
                         f"**{top['rps'] / best[b]:.0%}** of it")
            del model
        if args.int8_before:
            for c in sorted({r["concurrency"] for r in rows}):
                new_, old_ = (next(r for r in rows if r["concurrency"] == c and r["server"] == n)
                              for n in ("emolab serve ONNX int8", "emolab serve ONNX int8 (before)"))
                notes.append(f"- concurrency {c}: the int8 export serves **{new_['rps'] / old_['rps']:.2f}x** the "
                             f"earlier export's req/s, p99 {new_['p99']:.0f} ms vs {old_['p99']:.0f} ms")

        # the int8 server answers every test example as emolab predict does on the same export

        int8 = servers["emolab serve ONNX int8"]
        every = load(int8.predict_url, [{"inputs": t} for t in texts], 32)
        local = load_model(args.int8).predict_proba(texts)
        names_ = load_model(args.int8).labels.names
        served = np.array([[{x["label"]: x["score"] for x in every["answers"][i][0]}[n] for n in names_]
                           for i in range(len(texts))])
        same_argmax = int((served.argmax(1) == local.argmax(1)).sum())
        max_diff = float(np.abs(served - local).max())
        flips = int((local.argmax(1) != fp32_probs.argmax(1)).sum())
        figures["every_test_example"] = {"examples": len(texts), "same_argmax": same_argmax, "max_score_diff": max_diff,
                                         "errors": every["errors"], "int8_vs_fp32_argmax_differs": flips}
        notes.append(f"- every test example ({len(texts)}) through the int8 server: argmax equal to `emolab predict` "
                     f"on the same export for **{same_argmax} / {len(texts)}**, largest score difference "
                     f"{max_diff:.2e}, errors {every['errors']}; the int8 export disagrees with the fp32 run on "
                     f"{flips} of {len(texts)} (argmax)")

        if args.soak_minutes > 0:
            rss0 = int8.rss_mb()
            soak = load(int8.predict_url, bodies, 16, deadline=time.perf_counter() + 60 * args.soak_minutes)
            rss1 = int8.rss_mb()
            figures["soak"] = {"minutes": args.soak_minutes, "concurrency": 16, "rss_mb_start": rss0,
                               "rss_mb_end": rss1, **{k: v for k, v in soak.items() if k != "answers"}}
            notes.append(f"- soak, int8 server, concurrency 16, {args.soak_minutes:g} min: {soak['requests']} requests, "
                         f"**{soak['errors']} errors**, {soak['rps']:.1f} req/s, p99 {soak['p99']:.0f} ms; resident "
                         f"memory {rss0:.0f} MB at start, {rss1:.0f} MB at end")
    finally:
        for s in servers.values():
            s.stop()

    if args.face_run:
        face = Server("face", ["-m", "emolab.cli", "serve", f"f={args.face_run}"], "/v1/models/f/predict", "/ready")
        try:
            fb = face_bodies(args.face_run, 400)
            load(face.predict_url, fb[:16], 4)
            res = [load(face.predict_url, fb, 8) for _ in range(args.rounds)]
            med = {k: float(np.median([x[k] for x in res])) for k in ("rps", "p50", "p99")}
            figures["face"] = {"run": args.face_run, "images": 400, "concurrency": 8, **med,
                               "errors": sum(x["errors"] for x in res)}
            notes.append(f"- face model (`{args.face_run}`), 400 PNG test faces as base64 JSON, concurrency 8: "
                         f"**{med['rps']:.1f} images/s**, p50 {med['p50']:.0f} ms, p99 {med['p99']:.0f} ms, errors "
                         f"{sum(x['errors'] for x in res)} (median of {args.rounds} rounds)")
        finally:
            face.stop()

    machine = record.machine()
    lines = ["# Serving under load", "", f"Command: `{record.command}`", "",
             f"Machine: {machine['cpu_count']} CPU cores, {machine['platform']}; load average before "
             f"{'/'.join(f'{x:.2f}' for x in machine['load_before'])}; {machine['started_utc']} UTC, "
             f"{machine['wall_minutes']:.1f} min. Servers and the load generator share the cores. {args.requests} "
             f"requests per server, concurrency level and round; medians over {args.rounds} rounds, servers taken in "
             "rotating order.", "", table(rows, names[0]), "", *notes]
    record.finish(lines, args.out, figures)


if __name__ == "__main__":
    main()
