"""Face models: training and inference images/second on this machine, for every registered image model.

    python benchmarks/image_throughput.py --rounds 3 --out benchmarks/results/image-throughput.md

Training: SGD steps at batch 64 (`--batch`) on real FER2013 faces, with every kind of augmentation (flip,
rotation, shift, zoom, random erasing; the CPU preset uses only flips and shifts) applied per batch, as
`emolab run configs/fer2013-*.yaml` does per step.
Inference: `predict_proba` at batch 256 without test-time augmentation (ten-crop costs 10x that).
CNNs are trained in both memory layouts, NCHW and channels-last (what runs use since 2026-11-23), side by
side in each round, so the speed-up of channels-last is a ratio measured under the same load.
On a CUDA machine (`--device cuda`) the steps run under bf16 autocast, as `mixed_precision: auto` does there,
with the batch on the GPU; `torch.cuda.synchronize()` brackets each timing.
Models alternate within each round, so a slow moment of a shared machine hits all of them; medians over
rounds are reported, with the epoch time they imply for FER2013's 28,556 training images.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from emolab.config import config_from_dict
from emolab.data import load_dataset
from emolab.models import ModelConfig, create_model, model_config
from emolab.models.image_augment import AugmentConfig, batch_augmenter
from emolab.models.vision import to_pixels
from record import Record

PRESETS = {  # the sizes the shipped configs use
    "mlp": model_config("mlp", hidden_size=512, dropout=0.3),
    "cnn-small": model_config("cnn-small", width=32, hidden_size=256, dropout=0.3),
    "vgg-fer": model_config("vgg-fer", width=32, depths=[1, 1, 2, 2], crop_size=40, hidden_size=256, dropout=0.25),
    "resnet18-fer": model_config("resnet18-fer", width=64, dropout=0.3),
}
TRAIN_IMAGES = 28556
# every kind of augmentation, so each costs its share (the CPU preset uses only flips and shifts)
AUGMENT = AugmentConfig(hflip=True, rotation=10, shift=0.1, scale=0.1, random_erasing=0.25)


def train_rate(cfg: ModelConfig, images: np.ndarray, labels: np.ndarray, steps: int, batch: int,
               channels_last: bool = False, device: str = "cpu") -> float:
    torch.manual_seed(0)
    model = create_model(cfg, _labels())
    module = model.module.to(device).train()
    if channels_last:
        module.channels_last = True
        module.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    augment = batch_augmenter(AUGMENT, seed=0)
    rng = np.random.default_rng(0)

    def step() -> None:
        idx = rng.choice(len(images), size=batch, replace=False)
        x = augment({"pixels": to_pixels(images[idx]).to(device)})["pixels"]
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = module(pixels=x)
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor(labels[idx]).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up (cuDNN picks its algorithms on the first steps)
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def predict_rate(cfg: ModelConfig, images: np.ndarray, device: str = "cpu") -> float:
    model = create_model(cfg, _labels())  # predict_proba runs on CUDA when there is one
    model.module.eval()
    model.predict_proba(images[:256], batch_size=256)
    _sync(device)
    start = time.perf_counter()
    model.predict_proba(images, batch_size=256)
    _sync(device)
    return len(images) / (time.perf_counter() - start)


def _labels():
    from emolab.data.images import FER2013_LABELS
    from emolab.records import LabelSet

    return LabelSet(FER2013_LABELS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10, help="training steps timed per model and round")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--models", default=",".join(PRESETS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    record = Record()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(config_from_dict({"data": {"name": "fer2013"}}).data)
    train, test = ds.split("train"), ds.split("test")
    names = args.models.split(",")
    rates: dict[str, dict[str, list[float]]] = {n: {"train": [], "train_cl": [], "predict": []} for n in names}
    for r in range(args.rounds):
        for n in names:
            steps = args.steps * (10 if n == "mlp" else 1)
            rates[n]["train"].append(train_rate(PRESETS[n], train.inputs, train.labels, steps, args.batch,
                                                    device=args.device))
            if n != "mlp":
                rates[n]["train_cl"].append(train_rate(PRESETS[n], train.inputs, train.labels, steps, args.batch,
                                                       channels_last=True, device=args.device))
            rates[n]["predict"].append(predict_rate(PRESETS[n], test.inputs[:1024 if args.device == "cpu" else None],
                                                   device=args.device))
            print(f"round {r + 1}: {n}: train {rates[n]['train'][-1]:.1f} img/s, "
                  f"predict {rates[n]['predict'][-1]:.1f} img/s", flush=True)
    machine = record.machine()
    lines = ["# Face models: training and inference throughput", "",
             f"Command: `{record.command}`", "",
             f"Machine: {machine['processor']}, torch {machine['versions']['torch']}, "
             f"{torch.get_num_threads()} threads, "
             f"{machine['gpu'] + ' (bf16 autocast)' if args.device == 'cuda' else 'no GPU'}. "
             f"Medians over {args.rounds} alternating rounds. Load average "
             f"(1/5/15 min) {'/'.join(f'{x:.2f}' for x in machine['load_before'])} before, "
             f"{'/'.join(f'{x:.2f}' for x in machine['load_after'])} after: above 2 "
             "means other jobs shared the cores and the absolute rates are low by that factor.", "",
             f"| model | parameters | train img/s (batch {args.batch}, augmented, NCHW) | per-round train img/s | "
             "channels-last train img/s | channels-last / NCHW (median of per-round ratios) | FER2013 epoch | "
             "inference img/s (batch 256) |", "|---|---|---|---|---|---|---|---|"]
    figures = {"device": args.device, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
               "threads": torch.get_num_threads(), "train_images": TRAIN_IMAGES, "models": {}}
    for n in names:
        params = create_model(PRESETS[n], _labels()).num_parameters()
        figures["models"][n] = {"parameters": params, "train_per_round": rates[n]["train"],
                                "train_channels_last_per_round": rates[n]["train_cl"],
                                "predict_per_round": rates[n]["predict"]}
        tr, pr = statistics.median(rates[n]["train"]), statistics.median(rates[n]["predict"])
        cl = rates[n]["train_cl"]
        ratio = statistics.median(c / t for c, t in zip(cl, rates[n]["train"])) if cl else None
        best = max(tr, statistics.median(cl)) if cl else tr
        lines.append(f"| {n} | {params / 1e6:.2f}M | {tr:.1f} | {', '.join(f'{x:.1f}' for x in rates[n]['train'])} | "
                     f"{f'{statistics.median(cl):.1f}' if cl else '-'} | {f'{ratio:.2f}x' if ratio else '-'} | "
                     f"{_duration(TRAIN_IMAGES / best)} | {pr:.0f} |")
    record.finish(lines, args.out, figures)


if __name__ == "__main__":
    main()
