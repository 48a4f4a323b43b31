"""Hostile input against `emolab serve` (one process on 127.0.0.1), the figures of the hostile-input issue:

1. a lone surrogate ("\\ud800") among 60 concurrent texts to a transformer: how many requests fail;
2. /health latency while one request decodes 64 large PNGs (and the request's status and time);
3. /health latency and the server's peak memory while /faces reads 16 large photos.

    PYTHONPATH=src python benchmarks/hostile_server.py [--out FILE.md] [extra `emolab serve` options]

Builds its own tiny untrained models in a temporary folder (the figures do not depend on their weights)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from record import Record


def models(root: Path) -> tuple[Path, Path]:
    from emolab.data.images import FER2013_LABELS
    from emolab.models import create_model, model_config
    from emolab.records import LabelSet

    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 64}
    create_model(model_config("transformer", backbone_config=tiny, max_length=32),
                 LabelSet(("anger", "fear", "joy"))).save(root / "tiny")
    create_model(model_config("cnn-small", width=4, hidden_size=8), LabelSet(FER2013_LABELS)).save(root / "faces")
    return root / "tiny", root / "faces"


def large_png(width: int, height: int, mode: str, seed: int) -> bytes:
    from PIL import Image

    ramp = np.add.outer(np.arange(height), np.arange(width)) // 16 + seed
    pixels = (ramp % 256).astype(np.uint8)
    image = Image.fromarray(pixels) if mode == "L" else Image.fromarray(np.stack([pixels] * 3, -1))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def health_while(url: str, send) -> tuple[float, object, float]:
    """The slowest /health (s) while ``send()`` runs in a thread; ``send``'s result and duration."""
    out = {}

    def run():
        start = time.perf_counter()
        out["result"] = send()
        out["time"] = time.perf_counter() - start

    thread = threading.Thread(target=run)
    thread.start()
    slowest = 0.0
    time.sleep(0.05)
    while thread.is_alive():
        start = time.perf_counter()
        httpx.get(f"{url}/health", timeout=120)
        slowest = max(slowest, time.perf_counter() - start)
        time.sleep(0.05)
    thread.join()
    return slowest, out["result"], out["time"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False,
                                 epilog="Other options go to `emolab serve`.")
    ap.add_argument("--out", type=Path, default=None)
    args, serve_options = ap.parse_known_args()
    record = Record()
    root = Path(tempfile.mkdtemp(prefix="emolab-hostile-"))
    tiny, faces = models(root)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "emolab.cli", "serve", f"tiny={tiny}", f"faces={faces}",
                               "--port", str(port), *serve_options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # a full pipe would stall it
    lines = ["# Hostile input against `emolab serve`", "", f"Command: `{record.command}`", ""]

    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.time() < deadline, "the server did not start"
            time.sleep(0.3)
        base_mb = peak_rss_mb(server.pid)

        async def texts():
            bodies = [json.dumps({"inputs": f"i feel glad {i}"}) for i in range(60)]
            bodies.insert(30, json.dumps({"inputs": "\ud800"}))
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.post(f"{url}/v1/models/tiny/predict", content=b,
                                                          headers={"content-type": "application/json"})
                                              for b in bodies))

        answers = asyncio.run(texts())
        failed = sum(r.status_code >= 500 for i, r in enumerate(answers) if i != 30)
        figures = {"surrogate": {"status": answers[30].status_code, "failed_of_60": failed}}
        say(f"1. surrogate among 60 texts: its status {answers[30].status_code}; "
            f"{failed} of the 60 normal requests failed")

        pngs = [base64.b64encode(large_png(1500, 1500, "L", i)).decode() for i in range(64)]
        slowest, r, took = health_while(url, lambda: httpx.post(f"{url}/v1/models/faces/predict",
                                                                json={"inputs": pngs}, timeout=300))
        figures["pngs"] = {"base64_mb": sum(map(len, pngs)) / 1e6, "status": r.status_code, "seconds": took,
                           "slowest_health_ms": slowest * 1000}
        say(f"2. 64 PNGs of 1500x1500 ({sum(map(len, pngs)) / 1e6:.1f} MB base64): status {r.status_code} in "
            f"{took:.2f} s; slowest /health meanwhile {slowest * 1000:.0f} ms")

        photos = [base64.b64encode(large_png(3000, 2000, "RGB", i)).decode() for i in range(16)]
        slowest, r, took = health_while(url, lambda: httpx.post(f"{url}/v1/models/faces/faces",
                                                                json={"inputs": photos}, timeout=300))
        peak_mb = peak_rss_mb(server.pid)
        figures["photos"] = {"status": r.status_code, "seconds": took, "slowest_health_ms": slowest * 1000,
                             "peak_mb_before": base_mb, "peak_mb_after": peak_mb}
        say(f"3. /faces with 16 photos of 3000x2000: status {r.status_code} in {took:.2f} s; slowest /health "
            f"meanwhile {slowest * 1000:.0f} ms; server peak memory {base_mb:.0f} -> {peak_mb:.0f} MB")
        figures["health_after"] = httpx.get(f"{url}/health").json()
        say(f"   server still healthy: {figures['health_after']}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print("the server did not stop within 30 s of SIGTERM: killed")
            server.kill()
            server.wait()
    record.finish(lines, args.out, figures)


if __name__ == "__main__":
    main()
