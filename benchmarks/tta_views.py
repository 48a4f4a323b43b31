"""Face runs: accuracy of each test-time averaging (`eval.tta`) on PublicTest (validation) and PrivateTest (test).

    python benchmarks/tta_views.py runs/fer2013-vgg-c40-32ep runs/fer2013-vgg-c40-32ep-ema \
        --cache /tmp/tta-cache --out benchmarks/results/fer2013-tta.md

Each run's saved model scores every view of the `dense` grid once (every crop position on a 2-pixel grid and
its mirror: 50 views for a 40-pixel crop of a 48-pixel face); the other modes are subsets of those views
(`none`: the centre; `flip`: the centre and its mirror; `ten-crop`: the centre, the four corners and their
mirrors), so one pass gives every mode, and the `ten-crop` figures reproduce the runs' own metrics.json.
Probabilities are averaged, as `predict_proba` does. Choose a mode on validation; test is reported beside it.
With `--cache DIR` the per-view probabilities are kept in DIR/<run>.npz and reused (the scoring is the slow
part: about 5 minutes per split on 2 cores for 50 views).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from emolab.data import load_dataset
from emolab.models import load_model
from emolab.models.image_augment import crop_offsets, tta_views
from emolab.models.vision import to_pixels
from emolab.rundir import load_run_config
from record import Record

SPLITS = ("validation", "test")


def view_probs(model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """(N, views, classes) softmax of every `dense` view."""
    module = model.module.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = to_pixels(images[start:start + batch])
            views = tta_views(x, "dense", model.cfg.crop_size)
            out.append(torch.stack([torch.softmax(module(pixels=v).float(), -1) for v in views], 1).numpy())
    return np.concatenate(out)


def modes(side: int, crop: int | None) -> dict[str, list[int]]:
    """Each `eval.tta` mode as indices into the dense views (positions row-major, then their mirrors); a
    mode whose crops are not on the dense grid (odd margins) is left out."""
    dense = crop_offsets(side, "dense", crop)[1]
    n = len(dense)
    ten = crop_offsets(side, "ten-crop", crop)[1]
    if not set(ten) <= set(dense):
        return {"dense": list(range(2 * n))}
    five = [dense.index(o) for o in ten]  # the centre first
    return {"none": five[:1], "flip": [five[0], n + five[0]], "ten-crop": five + [n + i for i in five],
            "dense": list(range(2 * n))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    record = Record()
    torch.set_num_threads(args.threads)
    lines = [f"# Test-time averaging of face runs ({record.started:%Y-%m-%d})", "", f"    {record.command}", "",
             "| run | mode | views | validation accuracy | validation macro-F1 | test accuracy | test macro-F1 |",
             "|---|---|---|---|---|---|---|"]
    figures = {"runs": {}}
    for run in args.runs:
        model, cfg = load_model(run), load_run_config(run)
        ds = load_dataset(cfg.data, cfg.seed)
        cached = args.cache / f"{run.name}.npz" if args.cache else None
        if cached and cached.is_file():
            probs = dict(np.load(cached))
        else:
            probs = {}
            for split in SPLITS:
                t = time.perf_counter()
                probs[split] = view_probs(model, ds.split(split).inputs)
                took = time.perf_counter() - t
                print(f"{run.name} {split}: {probs[split].shape[1]} views in {took:.0f} s", flush=True)
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cached, **probs)
        for mode, idx in modes(ds.split("test").inputs.shape[-1], model.cfg.crop_size).items():
            row = [run.name, mode, str(len(idx))]
            scores = figures["runs"].setdefault(run.name, {})[mode] = {"views": len(idx)}
            for split in SPLITS:
                y, pred = ds.split(split).labels, probs[split][:, idx].mean(1).argmax(1)
                scores[split] = {"accuracy": accuracy_score(y, pred), "macro_f1": f1_score(y, pred, average="macro")}
                row += [f"{scores[split]['accuracy']:.4f}", f"{scores[split]['macro_f1']:.4f}"]
            lines.append("| " + " | ".join(row) + " |")
    record.finish(lines, args.out, figures)


if __name__ == "__main__":
    main()
