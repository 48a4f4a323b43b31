"""The training loop for neural models (text encoders and face CNNs), on Hugging Face Accelerate.
:func:`train` fits any model: a PyTorch one in the loop (:func:`fit`, on the task the model describes), any
other by its own ``fit``.

Accelerate owns devices, mixed precision, gradient accumulation and data parallelism (``accelerate
launch`` / ``torchrun``); this module owns the recipe: AdamW or SGD with Nesterov momentum
(``train.optimizer``), warmup + schedule, clipping with the pre-clip gradient norm logged every step, early
stopping on any validation metric, the best checkpoint, per-epoch metrics and epoch-level checkpoints that
``--resume`` continues from exactly.

A checkpoint (``checkpoints/last``) holds nothing that can run code when it is read: the weights as
safetensors, the optimizer, schedule, EMA, augmentation and gradient-scaler states and each process's random
states as tensor files that load with ``torch.load(weights_only=True)``, progress and history as JSON.
Accelerate's ``save_state`` / ``load_state`` are not used: ``load_state`` unpickles its files with
``weights_only=False``, so a tampered checkpoint could run code on ``--resume``.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from emolab.config import SCHEDULERS, RunConfig
from emolab.errors import EmolabError, unknown_name
from emolab.metrics import classification_metrics, lower_is_better, multilabel_metrics
from emolab.models.torch_base import TrainTask
from emolab.records import EpochRecord, TrainLogger


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
        from emolab.data.stats import class_weights

        weight = torch.tensor(class_weights(task.train_labels, len(task.label_names), cfg.train.class_weights),
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


# --- checkpoint files: nothing in them can run code when read ---------------------------------------------

CHECKPOINT_FORMAT = 2  # 1 (unversioned): Accelerate's save_state, with pickles that --resume no longer opens
WEIGHTS_FILE, STATE_FILE, TRAINER_FILE = "model.safetensors", "state.pt", "trainer_state.json"


def _rng_file(process_index: int) -> str:
    return f"rng_{process_index}.pt"


def _rng_states() -> dict:
    """This process's Python, NumPy, PyTorch (and CUDA) generator states, as tensors and plain values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state(),
              "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                        "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


def _unreadable(path: Path, why: str) -> EmolabError:
    return EmolabError(f"{path}: not a checkpoint file emolab wrote ({why})",
                       hint=f"the checkpoint in {path.parent} is damaged or was tampered with; start the run again "
                            "without --resume (or with --overwrite)")


def _load_tensors(path: Path) -> dict:
    """A ``torch.save``d dict of tensors and plain values, read with ``weights_only=True``: a file holding
    any other object (a planted pickle) is refused without running it."""
    if not path.is_file():
        raise _unreadable(path, "missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {_first_line(exc)}") from None


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise _unreadable(path, "missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, f"not safetensors: {exc}") from None


def _read_trainer_state(folder: Path) -> dict:
    path = folder / TRAINER_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise _unreadable(path, f"not JSON: {exc}") from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise EmolabError(f"{folder} is a checkpoint of an older emolab, whose Accelerate state files are pickles "
                          "that could run code when loaded; emolab no longer opens them",
                          hint="start the run again without --resume (add --overwrite to replace the unfinished run)")
    return saved


@dataclass
class _State:
    """Progress that a checkpoint keeps: the last finished epoch, optimizer steps, the best score so far."""

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0


class _Loop:
    """One training run of ``fit``, in its parts: set up, resume, train one epoch, end the epoch (validate,
    early-stopping bookkeeping), checkpoint, finish (restore the best weights)."""

    def __init__(self, task: TrainTask, cfg: RunConfig, workdir: Path | None, logger: TrainLogger, accelerator=None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        tc = self.tc = cfg.train
        self.task, self.cfg, self.logger = task, cfg, logger
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        self.acc = accelerator or Accelerator(mixed_precision=resolve_precision(tc.mixed_precision),
                                              gradient_accumulation_steps=tc.grad_accum_steps,
                                              cpu=not torch.cuda.is_available())
        set_seed(cfg.seed)
        self.main = self.acc.is_main_process
        self.ckpt_dir = Path(workdir) / "checkpoints" if workdir else None
        self.sampler = GroupedBatchSampler(len(task.train_set), tc.batch_size, seed=cfg.seed,
                                           lengths=task.train_lengths)
        loader = torch.utils.data.DataLoader(task.train_set, batch_sampler=self.sampler, collate_fn=task.collate)
        optimizer = _optimizer(task.module, tc.lr, tc.weight_decay, tc.optimizer, tc.momentum)
        self.module, self.optimizer, self.loader = self.acc.prepare(task.module, optimizer, loader)
        updates_per_epoch = math.ceil(len(self.loader) / tc.grad_accum_steps)
        total = tc.max_steps or updates_per_epoch * tc.epochs
        self.schedule = _Schedule(self.optimizer, tc.scheduler, int(tc.warmup_ratio * total), total)
        self.ema = None  # an exponential moving average of the weights: what is validated, checkpointed and returned
        if tc.ema_decay:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.acc.unwrap_model(self.module), use_buffers=True,  # batch-norm stats too
                                     multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay))
        self.scored = self.acc.unwrap_model(self.module) if self.ema is None else self.ema.module
        self.loss_fn = _loss_fn(task, cfg, self.acc.device)
        self.train_loss = task.loss or self.loss_fn
        self.metric = tc.early_stopping_metric
        self.minimise = lower_is_better(self.metric)
        self.state = _State()
        self.history: list[EpochRecord] = []

    def resume(self) -> None:
        """Continue after the last checkpointed epoch: weights, optimizer, schedule, random states, history."""
        last = self.ckpt_dir / "last" if self.ckpt_dir else None
        if last is None or not (last / TRAINER_FILE).is_file():
            return
        saved = _read_trainer_state(last)
        weights = _load_weights(last / WEIGHTS_FILE)
        state = _load_tensors(last / STATE_FILE)
        rng = _load_tensors(last / _rng_file(self.acc.process_index))
        try:
            self.acc.unwrap_model(self.module).load_state_dict(weights)
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            if hasattr(self.task.augment, "load_state_dict"):  # so a resumed run augments identically
                self.task.augment.load_state_dict(state["augment"])
            if self.acc.scaler is not None and state.get("scaler"):
                self.acc.scaler.load_state_dict(state["scaler"])
            self.acc.step = int(state["accelerator_step"])  # where gradient accumulation stands
            _set_rng_states(rng)
            self.state = _State(**saved["state"])
            self.history = [EpochRecord(**r) for r in saved["history"]]
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise EmolabError(f"{last}: the checkpoint does not fit this run ({type(exc).__name__}: "
                              f"{_first_line(exc)})",
                              hint="resume with the config the run was started with, or start again without "
                                   "--resume") from None
        if self.main:
            self.acc.print(f"resuming after epoch {self.state.epoch} (step {self.state.step})")
            self.logger.on_resume(self.state.step, self.history)

    def train_epoch(self, epoch: int):
        """One pass over the training batches; returns the epoch's training summary, step rows and last norm."""
        from accelerate.utils import gather_object
        from tqdm.auto import tqdm

        tc, acc, task, state = self.tc, self.acc, self.task, self.state
        self.sampler.start_epoch(epoch)
        if hasattr(task.train_set, "start_epoch"):  # datasets that augment per epoch (text augmentation)
            task.train_set.start_epoch(epoch)
        probs_seen, y_seen, loss_sum, n_seen, last_norm = [], [], 0.0, 0, None
        step_rows = []
        bar = tqdm(self.loader, desc=f"epoch {epoch}/{tc.epochs}", disable=not self.main, leave=False,
                   dynamic_ncols=True)
        for batch in bar:
            y = batch.pop("labels")
            batch.pop("index")
            targets = batch.pop("targets", None)
            with acc.accumulate(self.module):
                if task.augment is not None:
                    batch = task.augment(batch)
                logits = self.module(**batch)
                loss = self.train_loss(logits, y, targets)
                acc.backward(loss)
                if acc.sync_gradients:
                    last_norm = float(acc.clip_grad_norm_(self.module.parameters(), tc.grad_clip or float("inf")))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            probs_seen.append(_probs(task, logits.detach()).cpu().numpy())
            y_seen.append(y.detach().cpu().numpy())
            loss_sum += float(loss.detach()) * len(y)
            n_seen += len(y)
            if acc.sync_gradients:
                state.step += 1
                if self.ema is not None:
                    self.ema.update_parameters(acc.unwrap_model(self.module))
                lr = self.optimizer.param_groups[0]["lr"]
                self.schedule.step()
                step_rows.append({"step": state.step, "epoch": epoch, "lr": lr, "grad_norm": last_norm,
                                  "loss": float(loss.detach())})
                if state.step % tc.log_every == 0:
                    bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", lr=f"{lr:.2e}", gnorm=f"{last_norm:.2f}")
                if tc.max_steps and state.step >= tc.max_steps:
                    break
        # train metrics from the training passes of this epoch, gathered from every process
        local = (np.concatenate(y_seen), np.concatenate(probs_seen), loss_sum, n_seen)
        parts = gather_object([local]) if acc.num_processes > 1 else [local]
        summary = _summary(task, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                           sum(p[2] for p in parts) / max(sum(p[3] for p in parts), 1))
        return summary, step_rows, last_norm

    def end_epoch(self, epoch: int, train_summary: dict, last_norm: float | None, seconds: float) -> tuple[EpochRecord, bool]:
        """Validate the scored weights, step a plateau schedule, and keep the early-stopping score."""
        y_val, p_val, val_loss = evaluate_distributed(self.acc, self.scored, self.task, self.task.val_set,
                                                      self.task.val_lengths, self.cfg.eval.batch_size, self.loss_fn)
        val_summary = _summary(self.task, y_val, p_val, val_loss)
        self.schedule.epoch_end(val_loss)
        record = EpochRecord(epoch=epoch, step=self.state.step, lr=self.optimizer.param_groups[0]["lr"],
                             train=train_summary, validation=val_summary, seconds=seconds, grad_norm=last_norm)
        self.history.append(record)
        score = val_summary.get(self.metric)
        if score is None:
            raise unknown_name("train.early_stopping_metric", self.metric, list(val_summary))
        state = self.state
        improved = state.best is None or (score < state.best if self.minimise else score > state.best)
        state.epoch = epoch
        if improved:
            state.best, state.best_epoch, state.bad_epochs = score, epoch, 0
        else:
            state.bad_epochs += 1
        return record, improved

    def checkpoint(self, improved: bool) -> None:
        """The best weights (when they improved) and the full state of the last epoch, for ``--resume``."""
        from safetensors.torch import save_file

        if self.ckpt_dir is None:
            return
        if self.main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            if improved:
                weights = {k: v.detach().cpu().contiguous() for k, v in self.scored.state_dict().items()}
                save_file(weights, str(self.ckpt_dir / "best.safetensors"))
        last = self.ckpt_dir / "last"
        if self.main:
            last.mkdir(exist_ok=True)
            (last / TRAINER_FILE).unlink(missing_ok=True)  # written last: a checkpoint without it is incomplete
        self.acc.wait_for_everyone()
        torch.save(_rng_states(), last / _rng_file(self.acc.process_index))
        if self.main:
            module = self.acc.unwrap_model(self.module)
            save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                      str(last / WEIGHTS_FILE))
            state = {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                     "accelerator_step": int(self.acc.step),
                     "scaler": self.acc.scaler.state_dict() if self.acc.scaler is not None else None}
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            if hasattr(self.task.augment, "state_dict"):
                state["augment"] = self.task.augment.state_dict()
            torch.save(state, last / STATE_FILE)
        self.acc.wait_for_everyone()
        if self.main:
            (last / TRAINER_FILE).write_text(json.dumps({
                "format": CHECKPOINT_FORMAT, "state": self.state.__dict__,
                "history": [r.__dict__ for r in self.history]}))

    def finish(self) -> nn.Module:
        """The trained module in eval mode, holding the best epoch's weights (the average's, with EMA)."""
        from safetensors.torch import load_file

        self.acc.wait_for_everyone()
        unwrapped = self.acc.unwrap_model(self.module)
        if self.ema is not None:
            unwrapped.load_state_dict(self.scored.state_dict())
        best_file = self.ckpt_dir / "best.safetensors" if self.ckpt_dir else None
        state = self.state
        if best_file is not None and best_file.is_file() and state.best_epoch != state.epoch:
            unwrapped.load_state_dict(load_file(str(best_file)))
            if self.main:
                self.acc.print(f"restored the best epoch ({state.best_epoch}, val {self.metric} {state.best:.4f})")
        unwrapped.eval()
        return unwrapped

    def run(self) -> list[EpochRecord]:
        tc = self.tc
        self.module.train()
        for epoch in range(self.state.epoch + 1, tc.epochs + 1):
            if tc.max_steps and self.state.step >= tc.max_steps:
                break
            t0 = time.perf_counter()
            train_summary, step_rows, last_norm = self.train_epoch(epoch)
            record, improved = self.end_epoch(epoch, train_summary, last_norm, time.perf_counter() - t0)
            self.checkpoint(improved)
            if self.main:
                self.logger.on_steps(step_rows)
                self.logger.on_epoch(record)
            if tc.patience is not None and self.state.bad_epochs >= tc.patience:
                if self.main:
                    self.acc.print(f"early stopping: no {self.metric} improvement for {tc.patience} epoch(s)")
                break
        return self.history


def fit(task: TrainTask, cfg: RunConfig, *, workdir: Path | None = None, resume: bool = False,
        logger: TrainLogger | None = None, accelerator=None) -> list[EpochRecord]:
    """Train ``task.module``; afterwards ``task.module`` holds the best (or last) weights. With ``workdir``,
    epoch checkpoints go to ``workdir/checkpoints`` (and ``resume`` continues from them); every epoch and
    its optimizer steps are reported to ``logger``."""
    loop = _Loop(task, cfg, workdir, logger or TrainLogger(), accelerator)
    if resume:
        loop.resume()
    history = loop.run()
    task.module = loop.finish()
    return history


def train(model, dataset, cfg: RunConfig, logger: TrainLogger | None = None, *, workdir: Path | None = None,
          resume: bool = False) -> list[EpochRecord]:
    """Fit ``model`` on ``dataset``: a PyTorch model that the loop trains (``model.trains_in_loop``) through
    :func:`fit` on the task it describes (``model.task``), any other (tf-idf, the pretrained reference) by its own
    ``fit``."""
    if not model.trains_in_loop:
        return model.fit(dataset, cfg, logger, workdir=workdir, resume=resume)
    model.prepare_training(cfg)
    task = model.task(dataset, cfg)
    history = fit(task, cfg, workdir=workdir, resume=resume, logger=logger)
    model.module = task.module.to(model.device)
    return history
