"""Bulk scoring (``emolab score``): rows/s and peak memory against ``emolab predict --input``, a resume after
SIGKILL, the Ray engine against the local one, faces/s, and a transformer run and its ONNX int8 export
against the in-process limit.

    python benchmarks/score_throughput.py --tfidf /tmp/score-runs/emotion-tfidf --sizes 100000,1000000 \\
        --predict-sizes 100000,200000 --ray 20000 --resume 200000 \\
        --faces /tmp/score-runs/fer2013-reference --face-images 2000 \\
        [--transformer runs/emotion-minilm --onnx /tmp/minilm-onnx-int8 --transformer-texts 20000] \\
        --out benchmarks/results/score-throughput.md

Every command runs as its own process (``python -m emolab.cli``), timed from start to exit (model loading
included), with its peak resident memory (the process and its children, polled every 50 ms with psutil).
Inputs are dair-ai emotion training texts repeated to the size asked, one a line. Sizes alternate within each
round, so a slow moment of the shared machine hits all of them; medians over ``--rounds`` are reported.
The transformer section compares ``emolab score`` (chunks of 10,000, batches of 64) with the in-process limit:
the model's forward passes alone on the same texts, pre-tokenized and padded in length-sorted batches of 64.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from record import Record

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EMOLAB_DATA_DIR") or ROOT.parent / "shared" / "data")


def emotion_texts() -> list[str]:
    return [line.rsplit(";", 1)[0] for line in (DATA / "emotion" / "train.txt").read_text().splitlines()]


def write_texts(path: Path, n: int) -> Path:
    if not path.is_file():
        base = emotion_texts()
        with open(path, "w") as fh:
            for i in range(n):
                fh.write(base[i % len(base)] + "\n")
    return path


def emolab(*args) -> list[str]:
    return [sys.executable, "-m", "emolab.cli", *map(str, args)]


def measure(cmd: list[str], *, kill_when=None) -> dict:
    """Wall time and peak RSS (process tree) of ``cmd``; ``kill_when()`` true: SIGKILL it there."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    ps, peak, killed = psutil.Process(proc.pid), 0, False
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        if kill_when is not None and not killed and kill_when():
            proc.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    import re

    rate = re.search(r"\(([\d,]+) rows/s\)", out)
    if proc.returncode != 0 and not killed:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall": wall, "peak_mb": peak / 2 ** 20, "stdout": out, "killed": killed,
            "scoring_rate": float(rate.group(1).replace(",", "")) if rate else None}


def tfidf_section(run: Path, sizes: list[int], predict_sizes: list[int], rounds: int,
                  tmp: Path) -> tuple[list[str], dict]:
    results: dict[tuple[str, int], list[dict]] = {}
    for _ in range(rounds):
        for n in sorted(set(sizes) | set(predict_sizes)):
            src = write_texts(tmp / f"texts-{n}.txt", n)
            if n in sizes:
                out = tmp / f"score-{n}.parquet"
                results.setdefault(("score", n), []).append(
                    measure(emolab("score", run, src, "-o", out, "--overwrite", "--quiet")))
                assert len(pd.read_parquet(out, columns=["row"])) == n
            if n in predict_sizes:
                out = tmp / f"predict-{n}.csv"
                out.unlink(missing_ok=True)
                results.setdefault(("predict", n), []).append(measure(emolab("predict", run, "--input", src,
                                                                             "--output", out)))
    lines = ["## TF-IDF run: `emolab score` vs `emolab predict --input`", "",
             f"Run `{run}`; medians of {rounds} round(s); wall time from process start to exit (model load included).",
             "`score`'s own summary also gives its rate once the model is loaded.", "",
             "| command | texts | wall s | rows/s (wall) | rows/s (after load) | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|"]
    figures = {"run": run, "rounds": rounds, "measured": []}
    for (cmd, n), rs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        figures["measured"].append({"command": cmd, "texts": n, "wall_s": [r["wall"] for r in rs],
                                    "peak_mb": [r["peak_mb"] for r in rs],
                                    "rows_per_s_after_load": [r["scoring_rate"] for r in rs]})
        wall = statistics.median(r["wall"] for r in rs)
        peak = statistics.median(r["peak_mb"] for r in rs)
        own = f"{statistics.median(r['scoring_rate'] for r in rs):,.0f}" if rs[0]["scoring_rate"] else "-"
        lines.append(f"| {cmd} | {n:,} | {wall:.1f} | {n / wall:,.0f} | {own} | {peak:,.0f} |")
    lines.append("")
    if len(sizes) >= 2:
        lo, hi = min(sizes), max(sizes)
        plo = statistics.median(r["peak_mb"] for r in results[("score", lo)])
        phi = statistics.median(r["peak_mb"] for r in results[("score", hi)])
        lines.append(f"- `score` peak RSS at {hi:,} / at {lo:,}: **{phi / plo:.3f}** (target <= 1.10; "
                     f"{phi:,.0f} MB, target < 1,024 MB)")
    for n in sorted(set(sizes) & set(predict_sizes)):
        ws = statistics.median(r["wall"] for r in results[("score", n)])
        wp = statistics.median(r["wall"] for r in results[("predict", n)])
        ms = statistics.median(r["peak_mb"] for r in results[("score", n)])
        mp = statistics.median(r["peak_mb"] for r in results[("predict", n)])
        lines.append(f"- at {n:,} texts, `score` rows/s / `predict` rows/s: **{wp / ws:.2f}**; "
                     f"peak RSS `score` / `predict`: {ms / mp:.2f}")
    return lines + [""], figures


def resume_section(run: Path, n: int, tmp: Path) -> tuple[list[str], dict]:
    src = write_texts(tmp / f"texts-{n}.txt", n)
    whole, out = tmp / "resume-whole.parquet", tmp / "resume.parquet"
    for f in (whole, out):
        f.unlink(missing_ok=True)
    measure(emolab("score", run, src, "-o", whole, "--quiet"))
    manifest = Path(str(out) + ".partial") / "manifest.json"
    chunks = -(-n // 10_000)

    def half_way() -> bool:
        import json

        try:
            return len(json.loads(manifest.read_text())["chunks"]) >= chunks // 2
        except (OSError, ValueError):
            return False

    first = measure(emolab("score", run, src, "-o", out, "--quiet"), kill_when=half_way)
    import json

    done = len(json.loads(manifest.read_text())["chunks"])
    second = measure(emolab("score", run, src, "-o", out, "--resume", "--quiet"))
    a, b = pd.read_parquet(whole), pd.read_parquet(out)
    same, in_order = a.equals(b), b["row"].tolist() == list(range(n))
    figures = {"texts": n, "chunks": chunks, "killed": first["killed"], "chunks_before_kill": done, "equal": same,
               "rows": len(b), "in_order": in_order, "resumed_s": second["wall"], "summary": second["stdout"].strip()}
    return ["## Resume after SIGKILL", "",
            f"{n:,} texts in chunks of 10,000: killed with SIGKILL (killed: {first['killed']}) after {done} of "
            f"{chunks} chunks, then `--resume`: the final output {'equals' if same else 'DIFFERS FROM'} an "
            f"uninterrupted run's ({len(b):,} rows, rows 0..{len(b) - 1} each once, in order: "
            f"{in_order}). Resumed part: {second['wall']:.1f} s; "
            f"`{second['stdout'].strip()}`", ""], figures


def ray_section(run: Path, n: int, workers: int, tmp: Path) -> tuple[list[str], dict]:
    src = write_texts(tmp / f"texts-{n}.txt", n)
    local, ray = tmp / "ray-local.parquet", tmp / "ray.parquet"
    a = measure(emolab("score", run, src, "-o", local, "--overwrite", "--quiet"))
    b = measure(emolab("score", run, src, "-o", ray, "--overwrite", "--engine", "ray", "--workers", workers))
    x, y = pd.read_parquet(local), pd.read_parquet(ray)
    try:
        pd.testing.assert_frame_equal(x, y, check_dtype=False)
        same = "identical (every row, column and probability)"
    except AssertionError as exc:
        same = f"DIFFERENT: {exc}"
    figures = {"texts": n, "workers": workers, "local": {"wall_s": a["wall"], "peak_mb": a["peak_mb"]},
               "ray": {"wall_s": b["wall"], "peak_mb": b["peak_mb"]}, "outputs": same}
    return ["## Ray engine vs local engine", "",
            f"{n:,} texts, one machine (2 CPU cores), local Ray started by the command with {workers} actors.", "",
            "| engine | wall s | rows/s | peak RSS MB (process tree) |", "|---|---:|---:|---:|",
            f"| local | {a['wall']:.1f} | {n / a['wall']:,.0f} | {a['peak_mb']:,.0f} |",
            f"| ray ({workers} workers) | {b['wall']:.1f} | {n / b['wall']:,.0f} | {b['peak_mb']:,.0f} |", "",
            f"- Ray / local wall time: **{b['wall'] / a['wall']:.1f}x** (Ray's start, actors loading the model, "
            f"object store); outputs: {same}.", ""], figures


def faces_section(run: Path, n: int, tmp: Path) -> tuple[list[str], dict]:
    from PIL import Image

    folder = tmp / f"fer-test-{n}"
    if not folder.is_dir():
        folder.mkdir()
        frame = pd.read_csv(DATA / "fer2013" / "fer2013.csv.gz")
        test = frame[frame["Usage"] == "PrivateTest"].head(n)
        for i, pixels in enumerate(test["pixels"]):
            img = np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
            Image.fromarray(img).save(folder / f"{i:05d}.png")
    out = tmp / "faces.parquet"
    r = measure(emolab("score", run, folder, "-o", out, "--overwrite", "--quiet"))
    got = pd.read_parquet(out)
    figures = {"run": run, "images": n, "wall_s": r["wall"], "rows_per_s_after_load": r["scoring_rate"],
               "peak_mb": r["peak_mb"], "faces": int(got["face"].notna().sum()), "rows": len(got)}
    return ["## Faces", "",
            f"{n:,} FER2013 PrivateTest faces as 48x48 PNG (taken as already cropped: no detection) through `{run}`:",
            f"{r['wall']:.1f} s from process start to exit ({n / r['wall']:,.0f} images/s), "
            f"**{r['scoring_rate'] or 0:,.0f} images/s** once the model is loaded (the summary line), peak RSS "
            f"{r['peak_mb']:,.0f} MB; {int(got['face'].notna().sum()):,} faces, {len(got):,} rows.", ""], figures


def transformer_section(run: Path | None, onnx: Path | None, n: int, tmp: Path) -> tuple[list[str], dict]:
    src = write_texts(tmp / f"texts-{n}.txt", n)
    texts = src.read_text().splitlines()
    lines = ["## Transformer run: `emolab score` vs the in-process limit", "",
             f"{n:,} texts. Limit: the model's forward passes alone, on texts tokenized and padded into length-sorted "
             "batches of 64 before the clock starts, model loaded. `emolab score` (chunks of 10,000, batches of 64): "
             "its own rate once the model is loaded (its summary line: reading, tokenizing, sorting, scoring and "
             "writing), and from process start to exit.", "",
             "| model | limit rows/s | `score` rows/s after load | `score` rows/s (wall) | after load / limit |",
             "|---|---:|---:|---:|---:|"]
    figures = {"texts": n, "models": []}
    for label, path in [("run (fp32)", run), ("ONNX int8 export", onnx)]:
        if path is None:
            continue
        limit = in_process_limit(path, texts)
        out = tmp / f"tr-{label[:3]}.parquet"
        r = measure(emolab("score", path, src, "-o", out, "--overwrite", "--quiet"))
        own = r["scoring_rate"] or 0.0
        figures["models"].append({"model": label, "path": path, "limit_rows_per_s": limit,
                                  "rows_per_s_after_load": own, "wall_s": r["wall"]})
        lines.append(f"| {label} `{path}` | {limit:,.0f} | {own:,.0f} | {n / r['wall']:,.0f} | **{own / limit:.2f}** |")
    return lines + [""], figures


def in_process_limit(path: Path, texts: list[str], batch: int = 64) -> float:
    """Rows/s of the model's forward passes alone: texts tokenized and padded into length-sorted batches before
    the clock starts (PyTorch: the module under inference_mode; ONNX: ``session.run``, one text at a time for a
    dynamically quantized graph, as the model itself runs it)."""
    import torch

    from emolab.models import load_model

    model = load_model(path)
    tok = model.tokenizer
    enc = tok(texts, truncation=True, max_length=getattr(getattr(model, "cfg", None), "max_length", None)
              or model.max_length, return_token_type_ids="token_type_ids" in getattr(model, "inputs", ["token_type_ids"]))
    order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
    if getattr(model, "per_example", False):
        batch = 1
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    if hasattr(model, "session"):
        keys = [k for k in keys if k in model.inputs]
    feeds = []
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        width = max(len(enc["input_ids"][i]) for i in idx)
        feed = {}
        for k in keys:
            fill = (tok.pad_token_id or 0) if k == "input_ids" else 0
            feed[k] = np.array([enc[k][i] + [fill] * (width - len(enc[k][i])) for i in idx], dtype=np.int64)
        feeds.append(feed)
    start = time.perf_counter()
    if hasattr(model, "session"):
        for feed in feeds:
            model.session.run(None, feed)
    else:
        model.module.eval()
        with torch.inference_mode():
            for feed in feeds:
                model.module(**{k: torch.from_numpy(v) for k, v in feed.items()})
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tfidf", type=Path)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--predict-sizes", default="100000,200000")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--resume", type=int, default=0, help="texts for the SIGKILL + --resume check (0: skip)")
    ap.add_argument("--ray", type=int, default=0, help="texts for the Ray vs local comparison (0: skip)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--faces", type=Path, help="a face run or model folder")
    ap.add_argument("--face-images", type=int, default=2000)
    ap.add_argument("--transformer", type=Path, help="a transformer run (make demo: runs/emotion-minilm)")
    ap.add_argument("--onnx", type=Path, help="its `emolab export --format onnx --int8` folder")
    ap.add_argument("--transformer-texts", type=int, default=20000)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "score-bench")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    record = Record()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    sections, figures = [], {"memory_gib": psutil.virtual_memory().total / 2 ** 30}

    def add(name: str, section: tuple[list[str], dict]) -> None:
        sections.extend(section[0])
        figures[name] = section[1]

    if args.tfidf:
        add("tfidf", tfidf_section(args.tfidf, ints(args.sizes), ints(args.predict_sizes), args.rounds, args.workdir))
        if args.resume:
            add("resume", resume_section(args.tfidf, args.resume, args.workdir))
        if args.ray:
            add("ray", ray_section(args.tfidf, args.ray, args.workers, args.workdir))
    if args.faces:
        add("faces", faces_section(args.faces, args.face_images, args.workdir))
    if args.transformer or args.onnx:
        add("transformer", transformer_section(args.transformer, args.onnx, args.transformer_texts, args.workdir))
    lines = ["# `emolab score` throughput, memory, resume and engines", "", f"Command: `{record.command}`", "",
             f"Machine: {record.machine()['cpu_count']} CPU cores (shared with other work), "
             f"{figures['memory_gib']:.0f} GiB memory.", "", *sections]
    record.finish(lines, args.out, figures)


if __name__ == "__main__":
    main()
