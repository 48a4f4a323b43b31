"""The training loop for neural models (text encoders and face CNNs), on Hugging Face Accelerate.

Accelerate owns devices, mixed precision, gradient accumulation and data parallelism (``accelerate
launch`` / ``torchrun``); this module owns the recipe: AdamW, warmup + schedule, clipping with the
pre-clip gradient norm logged every step, early stopping on any validation metric, the best
checkpoint, per-epoch metrics and epoch-level checkpoints that ``--resume`` continues from exactly.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from emolab.config import RunConfig
from emolab.errors import unknown_name
from emolab.metrics import classification_metrics, multilabel_metrics
from emolab.records import EpochRecord

SCHEDULERS = ("linear", "cosine", "constant", "plateau", "onecycle")
LOWER_IS_BETTER = ("loss", "cross_entropy", "kl_divergence", "ece", "bce")


@dataclass
class TrainTask:
    """What the loop needs from a modality: the module, indexable datasets of dict examples (each with
    ``labels`` and ``index``), a collate function and, for text, lengths for length-grouped batches.

    A batch may also carry ``targets``: a target distribution per example (FER+ vote shares, a teacher's
    logits). The default loss then is cross-entropy against it; ``loss(logits, labels, targets)`` replaces
    the default loss for training (distillation); validation loss always uses the hard labels."""

    module: nn.Module
    train_set: Any
    val_set: Any
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]
    label_names: tuple[str, ...]
    multi_label: bool = False
    train_lengths: list[int] | None = None
    val_lengths: list[int] | None = None
    train_labels: np.ndarray | None = None  # for class weights
    augment: Callable[[dict], dict] | None = None  # applied to each training batch on device
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None


class GroupedBatchSampler(torch.utils.data.Sampler):
    """Seeded batches, reshuffled each epoch; with ``lengths``, examples of similar length share a batch
    (sorted within mega-batches of 50 batches) so dynamic padding wastes little."""

    def __init__(self, n: int, batch_size: int, *, seed: int, lengths=None, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.epoch = 0

    def start_epoch(self, epoch: int) -> None:
        # Deliberately not named ``set_epoch``: Accelerate would call that with its own count of
        # iterations in this process, which restarts at 0 after --resume.
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        if self.lengths is not None:
            mega = self.batch_size * (50 if self.shuffle else 10 ** 9)
            order = np.concatenate([chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                                    for chunk in np.array_split(order, max(1, math.ceil(self.n / mega)))])
        out = [order[i:i + self.batch_size].tolist() for i in range(0, self.n, self.batch_size)]
        if self.shuffle and self.lengths is not None:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)


def resolve_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def lower_is_better(metric: str) -> bool:
    return any(metric.endswith(k) for k in LOWER_IS_BETTER)


def _optimizer(module: nn.Module, lr: float, weight_decay: float, kind: str = "adamw",
               momentum: float = 0.9) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    try:  # the fused kernel: one pass over all parameters instead of a Python loop over tensors
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # a device or torch build without it
        return torch.optim.AdamW(groups, lr=lr)


class _Schedule:
    """Warmup then linear / cosine / constant decay per step, one-cycle (warmup = its rising phase), or
    ReduceLROnPlateau per epoch."""

    def __init__(self, optimizer, name: str, warmup: int, total: int):
        from transformers import get_scheduler

        if name not in SCHEDULERS:
            raise unknown_name("scheduler", name, SCHEDULERS)
        self.name, self.optimizer, self.warmup = name, optimizer, warmup
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.steps = 0
        if name == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=0)
            self._warm(0)
        elif name == "onecycle":
            # OneCycleLR divides by zero unless the warm-up spans >= 2 steps and the annealing >= 1 (tiny runs)
            total = max(total, 3)
            self.sched = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.base, total_steps=total, pct_start=min(max(warmup, 2), total - 1) / total,
                cycle_momentum=isinstance(optimizer, torch.optim.SGD))
        else:
            hf = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[name]
            self.sched = get_scheduler(hf, optimizer, num_warmup_steps=warmup, num_training_steps=total)

    def _warm(self, step: int) -> None:
        if step < self.warmup:
            for g, base in zip(self.optimizer.param_groups, self.base):
                g["lr"] = base * (step + 1) / (self.warmup + 1)
        elif step == self.warmup:
            for g, base in zip(self.optimizer.param_groups, self.base):
                g["lr"] = base

    def step(self) -> None:
        self.steps += 1
        if self.name == "plateau":
            self._warm(self.steps)
        else:
            self.sched.step()

    def epoch_end(self, val_loss: float) -> None:
        if self.name == "plateau" and self.steps >= self.warmup:
            self.plateau.step(val_loss)

    def state_dict(self) -> dict:
        inner = self.plateau.state_dict() if self.name == "plateau" else self.sched.state_dict()
        return {"steps": self.steps, "inner": inner}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        (self.plateau if self.name == "plateau" else self.sched).load_state_dict(state["inner"])


def _loss_fn(task: TrainTask, cfg: RunConfig, device) -> Callable:
    """``loss(logits, labels, targets=None)``: against ``targets`` (a distribution) when a batch has them."""
    if task.multi_label:
        bce = nn.BCEWithLogitsLoss()
        return lambda logits, y, targets=None: bce(logits.float(), y.float())
    weight = None
    if cfg.train.class_weights and task.train_labels is not None:
        counts = np.bincount(task.train_labels, minlength=len(task.label_names)).astype(float)
        balanced = counts.sum() / (len(counts) * np.maximum(counts, 1))
        # "sqrt" tempers the spread (FER+: 73x between neutral and contempt becomes 8.6x)
        weight = torch.tensor(np.sqrt(balanced) if cfg.train.class_weights == "sqrt" else balanced,
                              dtype=torch.float32, device=device)
    ce = nn.CrossEntropyLoss(reduction="none", label_smoothing=cfg.train.label_smoothing)

    def loss(logits, y, targets=None):
        per_example = ce(logits.float(), y if targets is None else targets.float())
        if weight is None:
            return per_example.mean()
        # each example weighs as its class: CrossEntropyLoss(weight=...) would also weight the label-smoothing
        # term per class, which rewards predicting the rarest class for every face (FER+ collapsed to 0.02)
        w = weight[y]
        return (per_example * w).sum() / w.sum()
    return loss


def _summary(task: TrainTask, y: np.ndarray, probs: np.ndarray, loss: float) -> dict[str, float]:
    if task.multi_label:
        m = multilabel_metrics(y, probs, task.label_names)
        return {"loss": loss, "macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"], "bce": m["bce"]}
    m = classification_metrics(y, probs, task.label_names)
    return {"loss": loss, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "weighted_f1": m["weighted_f1"],
            "cross_entropy": m["cross_entropy"], "kl_divergence": m["kl_divergence"]}


def _probs(task: TrainTask, logits: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    return torch.sigmoid(logits) if task.multi_label else torch.softmax(logits, dim=-1)


@torch.no_grad()
def evaluate_distributed(accelerator, module, task: TrainTask, dataset, lengths, batch_size: int, loss_fn):
    """Probabilities for every example of ``dataset`` exactly once, whatever the number of processes:
    each process scores every world_size-th batch, then indices and outputs are gathered and ordered."""
    from accelerate.utils import gather_object

    wrapped, module = module, accelerator.unwrap_model(module)  # DDP's forward could sync buffers: not here
    module.eval()
    sampler = GroupedBatchSampler(len(dataset), batch_size, seed=0, lengths=lengths, shuffle=False)
    mine = sampler.batches()[accelerator.process_index::accelerator.num_processes]
    idx, probs, ys, losses = [], [], [], []
    for batch_ids in mine:
        batch = {k: v.to(accelerator.device) for k, v in task.collate([dataset[i] for i in batch_ids]).items()}
        y = batch.pop("labels")
        index = batch.pop("index")
        batch.pop("targets", None)
        with accelerator.autocast():
            logits = module(**batch)
        losses.append(float(loss_fn(logits, y)) * len(batch_ids))
        idx.append(index.cpu().numpy())
        probs.append(_probs(task, logits).cpu().numpy())
        ys.append(y.cpu().numpy())
    local = (np.concatenate(idx) if idx else np.zeros(0, int), np.concatenate(probs) if probs else None,
             np.concatenate(ys) if ys else None, sum(losses))
    parts = gather_object([local]) if accelerator.num_processes > 1 else [local]
    index = np.concatenate([p[0] for p in parts])
    order = np.argsort(index, kind="stable")
    keep = order[np.r_[True, np.diff(index[order]) != 0]] if len(index) else order
    p = np.concatenate([x[1] for x in parts if x[1] is not None])[keep]
    y = np.concatenate([x[2] for x in parts if x[2] is not None])[keep]
    loss = sum(x[3] for x in parts) / max(len(index), 1)
    wrapped.train()
    return y, p, loss


def fit(task: TrainTask, cfg: RunConfig, *, workdir: Path | None = None, resume: bool = False,
        log: Callable[[EpochRecord], None] | None = None, accelerator=None) -> list[EpochRecord]:
    """Train ``task.module`` in place; on return it holds the best (or last) weights."""
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    tc = cfg.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    accelerator = accelerator or Accelerator(mixed_precision=resolve_precision(tc.mixed_precision),
                                             gradient_accumulation_steps=tc.grad_accum_steps,
                                             cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    main = accelerator.is_main_process
    ckpt_dir = Path(workdir) / "checkpoints" if workdir else None

    sampler = GroupedBatchSampler(len(task.train_set), tc.batch_size, seed=cfg.seed,
                                  lengths=task.train_lengths if tc.group_by_length else None)
    loader = torch.utils.data.DataLoader(task.train_set, batch_sampler=sampler, collate_fn=task.collate)
    module = task.module
    optimizer = _optimizer(module, tc.lr, tc.weight_decay, tc.optimizer, tc.momentum)
    module, optimizer, loader = accelerator.prepare(module, optimizer, loader)
    updates_per_epoch = math.ceil(len(loader) / tc.grad_accum_steps)
    total = tc.max_steps or updates_per_epoch * tc.epochs
    schedule = _Schedule(optimizer, tc.scheduler, int(tc.warmup_ratio * total), total)
    accelerator.register_for_checkpointing(schedule)
    if hasattr(task.augment, "state_dict"):  # its random state, so a resumed run augments identically
        accelerator.register_for_checkpointing(task.augment)
    ema = None  # an exponential moving average of the weights: what is validated, checkpointed and returned
    if tc.ema_decay:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(accelerator.unwrap_model(module), multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay),
                            use_buffers=True)  # batch-norm statistics are averaged too
        accelerator.register_for_checkpointing(ema)
    scored = accelerator.unwrap_model(module) if ema is None else ema.module  # validated and checkpointed
    loss_fn = _loss_fn(task, cfg, accelerator.device)
    train_loss = task.loss or loss_fn

    history: list[EpochRecord] = []
    state = {"epoch": 0, "step": 0, "best": None, "best_epoch": None, "bad_epochs": 0}
    if resume and ckpt_dir and (ckpt_dir / "last" / "trainer_state.json").is_file():
        accelerator.load_state(str(ckpt_dir / "last"))
        saved = json.loads((ckpt_dir / "last" / "trainer_state.json").read_text())
        state = saved["state"]
        history = [EpochRecord(**r) for r in saved["history"]]
        if main:
            accelerator.print(f"resuming after epoch {state['epoch']} (step {state['step']})")
    steps_log = (ckpt_dir.parent / "steps.jsonl") if ckpt_dir else None
    if main and steps_log is not None:
        kept = [ln for ln in (steps_log.read_text().splitlines() if steps_log.is_file() and resume else [])
                if json.loads(ln)["step"] <= state["step"]]
        steps_log.write_text("".join(ln + "\n" for ln in kept))

    metric = tc.early_stopping_metric
    minimise = lower_is_better(metric)
    module.train()
    for epoch in range(state["epoch"] + 1, tc.epochs + 1):
        if tc.max_steps and state["step"] >= tc.max_steps:
            break
        sampler.start_epoch(epoch)
        t0 = time.perf_counter()
        probs_seen, y_seen, loss_sum, n_seen, last_norm = [], [], 0.0, 0, None
        step_rows = []
        bar = tqdm(loader, desc=f"epoch {epoch}/{tc.epochs}", disable=not main, leave=False, dynamic_ncols=True)
        for batch in bar:
            y = batch.pop("labels")
            batch.pop("index")
            targets = batch.pop("targets", None)
            with accelerator.accumulate(module):
                if task.augment is not None:
                    batch = task.augment(batch)
                logits = module(**batch)
                loss = train_loss(logits, y, targets)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(module.parameters(), tc.grad_clip or float("inf"))
                    last_norm = float(norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            probs_seen.append(_probs(task, logits.detach()).cpu().numpy())
            y_seen.append(y.detach().cpu().numpy())
            loss_sum += float(loss.detach()) * len(y)
            n_seen += len(y)
            if accelerator.sync_gradients:
                state["step"] += 1
                if ema is not None:
                    ema.update_parameters(accelerator.unwrap_model(module))
                lr = optimizer.param_groups[0]["lr"]
                schedule.step()
                step_rows.append({"step": state["step"], "epoch": epoch, "lr": lr, "grad_norm": last_norm,
                                  "loss": float(loss.detach())})
                if state["step"] % tc.log_every == 0:
                    bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", lr=f"{lr:.2e}", gnorm=f"{last_norm:.2f}")
                if tc.max_steps and state["step"] >= tc.max_steps:
                    break
        # train metrics from the training passes of this epoch, gathered from every process
        local = (np.concatenate(y_seen), np.concatenate(probs_seen), loss_sum, n_seen)
        parts = gather_object([local]) if accelerator.num_processes > 1 else [local]
        y_tr = np.concatenate([p[0] for p in parts])
        p_tr = np.concatenate([p[1] for p in parts])
        train_summary = _summary(task, y_tr, p_tr, sum(p[2] for p in parts) / max(sum(p[3] for p in parts), 1))
        y_val, p_val, val_loss = evaluate_distributed(accelerator, scored, task, task.val_set, task.val_lengths,
                                                      cfg.eval.batch_size, loss_fn)
        val_summary = _summary(task, y_val, p_val, val_loss)
        schedule.epoch_end(val_loss)
        record = EpochRecord(epoch=epoch, step=state["step"], lr=optimizer.param_groups[0]["lr"],
                             train=train_summary, validation=val_summary,
                             seconds=time.perf_counter() - t0, grad_norm=last_norm)
        history.append(record)
        score = val_summary.get(metric)
        if score is None:
            raise unknown_name("train.early_stopping_metric", metric, list(val_summary))
        improved = state["best"] is None or (score < state["best"] if minimise else score > state["best"])
        state["epoch"] = epoch
        if improved:
            state.update(best=score, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        if ckpt_dir is not None:
            if main:
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                with steps_log.open("a") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in step_rows)
                if improved:
                    weights = {k: v.detach().cpu().contiguous() for k, v in scored.state_dict().items()}
                    save_file(weights, str(ckpt_dir / "best.safetensors"))
            accelerator.wait_for_everyone()
            accelerator.save_state(str(ckpt_dir / "last"))
            if main:
                (ckpt_dir / "last" / "trainer_state.json").write_text(
                    json.dumps({"state": state, "history": [r.__dict__ for r in history]}))
        if main and log:
            log(record)
        if tc.patience is not None and state["bad_epochs"] >= tc.patience:
            if main:
                accelerator.print(f"early stopping: no {metric} improvement for {tc.patience} epoch(s)")
            break
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(module)
    if ema is not None:
        unwrapped.load_state_dict(scored.state_dict())
    best_file = ckpt_dir / "best.safetensors" if ckpt_dir else None
    if best_file is not None and best_file.is_file() and state["best_epoch"] != state["epoch"]:
        unwrapped.load_state_dict(load_file(str(best_file)))
        if main:
            accelerator.print(f"restored the best epoch ({state['best_epoch']}, val {metric} {state['best']:.4f})")
    unwrapped.eval()
    task.module = unwrapped
    return history
