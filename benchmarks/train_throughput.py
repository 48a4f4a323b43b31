"""Training throughput: emolab's loop vs Hugging Face ``Trainer`` on the same model, data, batch size and
number of steps, alternating, several rounds. Reports training examples/second for each and the ratio.

    python benchmarks/train_throughput.py --steps 40 --rounds 3 --out benchmarks/results/train-throughput.md

Both sides train the same module (all-MiniLM-L6-v2 + mean pooling + linear head, freshly built from the
same seed each round) on the same tokenised dair-ai emotion examples with dynamic padding and
length-grouped batches, AdamW with linear warmup/decay and gradient clipping; neither evaluates while
timed (emolab's loop scores a 64-example validation set at the end of its epoch; that is included).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from emolab.config import RunConfig, config_from_dict
from emolab.data import dataset_config
from emolab.data import load_dataset
from emolab.models import create_model
from emolab.records import Dataset
from record import Record


class WithLoss(torch.nn.Module):
    """Adapter so Trainer can train emolab's module: returns the loss when labels are given."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, input_ids, attention_mask, labels=None, token_type_ids=None):
        logits = self.module(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def build(ds: Dataset, cfg: RunConfig):
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, ds.labels)


def time_emolab(ds: Dataset, cfg: RunConfig) -> float:
    from emolab.training import fit

    model = build(ds, cfg)
    task = model.task(ds)
    start = time.perf_counter()
    fit(task, cfg)
    return time.perf_counter() - start


def time_trainer(ds: Dataset, cfg: RunConfig) -> float:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    model = build(ds, cfg)
    train = ds.split("train")
    enc = model.encode(train.inputs)
    rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             "token_type_ids": enc["token_type_ids"][i], "labels": int(train.labels[i])} for i in range(len(train))]
    tc = cfg.train
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=tc.batch_size, max_steps=tc.max_steps,
                                 learning_rate=tc.lr, weight_decay=tc.weight_decay, warmup_steps=int(tc.warmup_ratio * tc.max_steps),
                                 lr_scheduler_type="linear", max_grad_norm=tc.grad_clip, logging_steps=10,
                                 save_strategy="no", eval_strategy="no", report_to=[], train_sampling_strategy="group_by_length",
                                 disable_tqdm=True, dataloader_num_workers=0, seed=cfg.seed, use_cpu=True)
        trainer = Trainer(model=WithLoss(model.module), args=args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(model.tokenizer))
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="benchmarks/results/train-throughput.md")
    args = ap.parse_args()
    record = Record()
    cfg = config_from_dict({"model": {"name": "transformer", "backbone": "minilm-l6", "pooling": "mean"},
                            "train": {"batch_size": args.batch_size, "max_steps": args.steps, "epochs": 1,
                                      "lr": 5e-5, "warmup_ratio": 0.06},
                            "data": {"name": "emotion"}})
    full = load_dataset(dataset_config("emotion"), cfg.seed)
    n = args.steps * args.batch_size
    ds = Dataset("emotion", full.labels, {"train": full.split("train").subset(np.arange(n)),
                                          "validation": full.split("validation").subset(np.arange(64))})
    results = {"emolab": [], "trainer": []}
    warm = Dataset("emotion", full.labels, {"train": ds.split("train").subset(np.arange(64)),
                                            "validation": ds.split("validation")})
    warm_cfg = config_from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "max_steps": 2}})
    for fn in (time_emolab, time_trainer):  # untimed: imports, allocator and kernel warm-up for both
        fn(warm, warm_cfg)
    for r in range(args.rounds):
        order = ("emolab", "trainer") if r % 2 == 0 else ("trainer", "emolab")
        for name in order:
            seconds = (time_emolab if name == "emolab" else time_trainer)(ds, cfg)
            results[name].append(n / seconds)
            print(f"round {r + 1} {name}: {n / seconds:.1f} examples/s ({seconds:.1f}s)", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    ratios = [a / b for a, b in zip(results["emolab"], results["trainer"])]
    machine = record.machine()
    lines = [
        "# Training throughput: emolab vs Hugging Face Trainer", "",
        f"Command: `{record.command}`", "",
        f"Machine: {machine['processor']}, {machine['cpu_count']} cores, torch "
        f"{machine['versions']['torch']}, {torch.get_num_threads()} threads; minilm-l6 + mean pooling, batch "
        f"{args.batch_size}, {args.steps} optimizer steps per measurement, dair-ai emotion texts.", "",
        "| engine | examples/s per round | median |", "|---|---|---|",
        *(f"| {k} | {', '.join(f'{x:.1f}' for x in v)} | {med[k]:.1f} |" for k, v in results.items()), "",
        f"emolab / Trainer, per round (side by side): {', '.join(f'{x:.3f}' for x in ratios)}; "
        f"median ratio **{statistics.median(ratios):.3f}x**.",
    ]
    record.finish(lines, args.out, {"steps": args.steps, "batch_size": args.batch_size, "examples": n,
                                    "threads": torch.get_num_threads(), "examples_per_s": results,
                                    "ratios": ratios})


if __name__ == "__main__":
    main()
