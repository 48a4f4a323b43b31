"""Compression methods by name. Each takes the :class:`Context` (the fp32 model, its data, the options)
and returns one or more :class:`~emolab.compression.measure.Candidate` models to measure.

``METHODS`` maps a name to ``(function, model kinds it supports)``; an unknown name lists the valid ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emolab.compression.measure import Candidate, EvalSet, count_parameters, quality, state_bytes
from emolab.config import RunConfig
from emolab.errors import EmolabError, unknown_name
from emolab.records import Dataset


@dataclass(frozen=True)
class CompressOptions:
    """Everything ``emolab compress`` can be told; defaults suit MiniLM-L6 on 2 CPU cores."""

    methods: tuple[str, ...] = ("fp16", "prune-unstructured", "prune-structured", "dynamic-int8", "onnx-int8",
                                "distill")
    tolerance: float = 0.01  # accuracy drop (fraction) allowed when picking the sparsity
    sparsities: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    scopes: tuple[str, ...] = ("global", "layer")  # unstructured: rank weights over all layers, or per layer
    sweep_recovery_epochs: int = 0  # unstructured: recovery fine-tune per sweep point (0: none)
    recovery_epochs: int = 1  # structured pruning
    recovery_lr: float = 5e-5  # transformers
    cnn_recovery_lr: float = 1e-3  # CNNs (prune-channels)
    max_train_steps: int | None = None  # cap on optimizer steps of every fine-tune (smoke runs, tests)
    max_train_examples: int | None = None  # training examples for fine-tunes and distillation (None: all)
    max_val_examples: int | None = 1000  # validation examples scored after each fine-tune epoch
    head_fraction: float = 0.5  # attention heads removed per layer
    ffn_fraction: float = 0.5  # feed-forward neurons removed per layer
    channel_fraction: float = 0.5  # CNN conv channels removed
    importance_batches: int = 16  # training batches for the Taylor importance of heads and neurons
    distill_epochs: int = 2
    distill_lr: float = 1e-4
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the KL (soft-target) term; 1 - alpha on the hard labels
    max_eval_examples: int | None = None  # test examples every method is scored on (None: the whole split)
    half_eval_examples: int | None = 500  # fp16/bf16 on CPU are slow: scored on the first N only
    timing_examples: int = 100
    timing_rounds: int = 3
    half_timing_examples: int = 20  # fp16/bf16 are timed on fewer examples (slow on CPU)
    threads: int | None = None  # CPU threads for PyTorch and ONNX Runtime alike (None: their defaults)

    def __post_init__(self):
        problems = []
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise unknown_name("compression method", unknown[0], list(METHODS))
        if not 0 <= self.tolerance < 1:
            problems.append(f"tolerance must be in [0, 1), got {self.tolerance}")
        if not self.sparsities or not all(0 < s < 1 for s in self.sparsities):
            problems.append(f"sparsities must be in (0, 1), got {list(self.sparsities)}")
        for name in ("head_fraction", "ffn_fraction", "channel_fraction"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        bad_scopes = [s for s in self.scopes if s not in ("global", "layer")]
        if bad_scopes:
            problems.append(f"scopes must be global and/or layer, got {bad_scopes}")
        if self.temperature <= 0 or not 0 <= self.alpha <= 1:
            problems.append(f"temperature must be > 0 and alpha in [0, 1], got {self.temperature}, {self.alpha}")
        if self.timing_rounds < 1 or self.timing_examples < 1 or (self.threads is not None and self.threads < 1):
            problems.append("timing_rounds, timing_examples and threads must be >= 1")
        if problems:
            raise EmolabError("invalid compression options: " + "; ".join(problems))


@dataclass
class Context:
    model: Any  # the fp32 model of the run (methods copy it, never change it)
    cfg: RunConfig
    dataset: Dataset
    options: CompressOptions
    evalset: EvalSet
    out: Path  # where methods may save models (``<run>/compression/models``)
    say: Callable[[str], None] = print
    sweep: list[dict[str, Any]] = field(default_factory=list)  # unstructured sweep points

    @property
    def kind(self) -> str:
        return model_kind(self.model)

    def score(self, model, n: int | None = None) -> dict[str, Any]:
        ev = self.evalset.head(n)
        return quality(model.predict_proba(ev.texts, batch_size=self.cfg.eval.batch_size), ev)

    def train_data(self) -> Dataset:
        from emolab.compression.finetune import subsample

        ds = subsample(self.dataset, "train", self.options.max_train_examples, self.cfg.seed)
        return subsample(ds, "validation", self.options.max_val_examples, self.cfg.seed)

    def finetune(self, model, *, epochs: int, lr: float, **kwargs) -> list:
        from emolab.compression.finetune import finetune

        return finetune(model, self.train_data(), self.cfg, epochs=epochs, lr=lr,
                        max_steps=self.options.max_train_steps, **kwargs)


def _side(ctx: Context) -> int:
    return ctx.model.card().side  # text models: unused


def calibration_images(dataset: Dataset, seed: int, n: int = 512) -> np.ndarray:
    """A seeded sample of training faces for static int8 calibration."""
    train = dataset.split("train")
    idx = np.random.default_rng(seed).permutation(len(train))[:n]
    return train.inputs[np.sort(idx)]


def calibration_texts(dataset: Dataset, seed: int, n: int = 256) -> list[str]:
    """A seeded sample of training texts for static int8 calibration."""
    train = dataset.split("train")
    idx = np.random.default_rng(seed).permutation(len(train))[:n]
    return [train.inputs[i] for i in np.sort(idx)]


def calibration(dataset: Dataset, seed: int, kind: str):
    """Training images or texts (by model kind) for static int8 calibration."""
    return calibration_images(dataset, seed) if kind == IMAGE else calibration_texts(dataset, seed)


def model_kind(model) -> str:
    """``text`` or ``image``: which methods apply."""
    return model.modality


def _saved(ctx: Context, method: str, model, **kw) -> Candidate:
    """Save a model that loads with ``load_model`` into ``compression/models/<method>`` and measure that file."""
    folder = ctx.out / method
    model.save(folder)
    total, nonzero = count_parameters(model.module)
    return Candidate(method, model, total, nonzero, artifact=folder / "model.safetensors",
                     notes=kw.pop("notes") + f"; saved in compression/models/{method}", **kw)


def _same_size(ctx: Context, model, method: str, **kw) -> Candidate:
    total, nonzero = count_parameters(ctx.model.module)
    return Candidate(method, model, total, nonzero, **kw)


# --- methods -------------------------------------------------------------------------------------------


def fp32(ctx: Context) -> list[Candidate]:
    return [_same_size(ctx, ctx.model, "fp32", artifact=state_bytes(ctx.model.module), notes="the run's model")]


def _half(precision: str):
    def method(ctx: Context) -> list[Candidate]:
        from emolab.compression.precision import at_precision

        model = at_precision(ctx.model, precision)
        n = ctx.options.half_eval_examples
        note = f"scored on the first {n} eval examples (slow on CPU)" if n else ""
        return [_same_size(ctx, model, precision, precision=precision, artifact=state_bytes(model.module),
                           max_eval_examples=n, notes=note)]

    return method


def prune_unstructured(ctx: Context) -> list[Candidate]:
    """Sweep sparsity per scope; keep the highest sparsity within the accuracy tolerance (fp32)."""
    from emolab.compression.precision import at_precision
    from emolab.compression.pruning import make_permanent, mask_unstructured, prunable_weights, sparsity

    o = ctx.options
    out = []
    for scope in o.scopes:
        best = None
        for target in sorted(o.sparsities):
            model = copy.deepcopy(ctx.model)
            weights = prunable_weights(model.module)
            mask_unstructured(weights, target, scope)
            if o.sweep_recovery_epochs:
                ctx.finetune(model, epochs=o.sweep_recovery_epochs, lr=o.recovery_lr)
            make_permanent(weights)
            row = {"scope": scope, "target": target, "sparsity": sparsity(weights),
                   "recovery_epochs": o.sweep_recovery_epochs}
            for precision in ("fp32", "fp16"):
                scored = model if precision == "fp32" else at_precision(model, precision)
                q = ctx.score(scored, None if precision == "fp32" else o.half_eval_examples)
                ctx.sweep.append({**row, "precision": precision, "n_eval": q["n_eval"], "accuracy": q["accuracy"],
                                  "macro_f1": q["macro_f1"], "delta_accuracy": q["delta_accuracy"]})
                if precision == "fp32":
                    fp32_q = q
            ctx.say(f"  {scope} {target:.0%}: accuracy {fp32_q['accuracy']:.4f}")
            if -fp32_q["delta_accuracy"] <= o.tolerance + 1e-12:
                best = (target, row, model)
        if best is None:
            ctx.say(f"  {scope}: no sparsity within the tolerance {o.tolerance}")
            continue
        target, row, model = best
        total, nonzero = count_parameters(model.module)
        out.append(Candidate(
            f"prune-unstructured-{scope}@{target:.0%}", model, total, nonzero, artifact=state_bytes(model.module),
            notes=f"highest sparsity within {o.tolerance:.1%} accuracy of fp32; zeros stored in dense tensors: the "
                  "dense file size and the latency do not change, only the gzip size shrinks",
            details={"sparsity_of_pruned_weights": row["sparsity"], "scope": scope}))
    return out


def prune_structured(ctx: Context) -> list[Candidate]:
    """Remove attention heads and feed-forward neurons, then fine-tune to recover."""
    from emolab.compression.pruning import prune_heads_and_neurons, taylor_importance
    from emolab.models.pruned import PrunedTransformerClassifier

    o = ctx.options
    model = PrunedTransformerClassifier.from_transformer(copy.deepcopy(ctx.model))
    task = model.task(ctx.train_data(), ctx.cfg)
    rng = np.random.default_rng(ctx.cfg.seed)
    idx = rng.permutation(len(task.train_set))[: o.importance_batches * 32]
    batches = [task.collate([task.train_set[int(i)] for i in idx[s:s + 32]]) for s in range(0, len(idx), 32)]
    heads, neurons = taylor_importance(model.module, batches)
    kept = prune_heads_and_neurons(model.module, heads, neurons, head_fraction=o.head_fraction,
                                   ffn_fraction=o.ffn_fraction)
    before = ctx.score(model)
    ctx.say(f"  pruned heads/neurons kept per layer {kept}; accuracy before recovery {before['accuracy']:.4f}")
    if o.recovery_epochs:
        ctx.finetune(model, epochs=o.recovery_epochs, lr=o.recovery_lr)
    return [_saved(ctx, "prune-structured", model,
                   notes=f"{o.head_fraction:.0%} of heads and {o.ffn_fraction:.0%} of FFN neurons removed per layer, "
                         f"{o.recovery_epochs} recovery epoch(s)",
                   details={"kept": kept, "accuracy_before_recovery": before["accuracy"]})]


def prune_channels(ctx: Context) -> list[Candidate]:
    """CNNs: remove conv channels (torch-pruning, L1), then fine-tune to recover."""
    import torch

    from emolab.compression.pruning import prune_channels as cut

    o = ctx.options
    model = copy.deepcopy(ctx.model)
    side = _side(ctx)
    counts = cut(model.module.cpu().eval(), {"pixels": torch.zeros(1, 1, side, side)}, ratio=o.channel_fraction)
    before = ctx.score(model)
    ctx.say(f"  parameters {counts}; accuracy before recovery {before['accuracy']:.4f}")
    if o.recovery_epochs:
        ctx.finetune(model, epochs=o.recovery_epochs, lr=o.cnn_recovery_lr)
    return [_saved(ctx, "prune-channels", model,
                   notes=f"{o.channel_fraction:.0%} of conv channels removed, {o.recovery_epochs} recovery epoch(s)",
                   details={**counts, "accuracy_before_recovery": before["accuracy"]})]


def dynamic_int8(ctx: Context) -> list[Candidate]:
    from emolab.compression.quantize import dynamic_int8 as quantize

    model = quantize(ctx.model)
    return [_same_size(ctx, model, "dynamic-int8", precision="int8", artifact=state_bytes(model.module),
                       notes="PyTorch dynamic quantization of nn.Linear weights (int8), activations scaled per call: "
                             "scores depend on batch-mates, so it runs one example at a time")]


def _onnx(int8: bool, dynamic: bool = False):
    def method(ctx: Context) -> list[Candidate]:
        from emolab.compression.quantize import export_onnx

        name = ("onnx-int8-dynamic" if dynamic else "onnx-int8") if int8 else "onnx"
        image = ctx.kind == IMAGE
        model = export_onnx(ctx.model, ctx.out / name, int8=int8, dynamic=dynamic, threads=ctx.options.threads,
                            source=ctx.model.name if image else str(ctx.model.cfg.backbone),
                            calibration=calibration(ctx.dataset, ctx.cfg.seed, ctx.kind) if int8 and not dynamic
                            else None, side=_side(ctx))
        how = ("dynamic int8 weights, activations scaled per call: scores depend on batch-mates, so it runs one "
               "text at a time" if dynamic else "static int8 (calibrated activations, per-channel weights)")
        return [_same_size(ctx, model, name, precision="int8" if int8 else "fp32", artifact=ctx.out / name / "model.onnx",
                           notes=(f"ONNX Runtime, {how}" if int8 else "ONNX Runtime, fp32") +
                                 f"; deployable folder compression/models/{name}")]

    return method


def distill(ctx: Context) -> list[Candidate]:
    """A half-depth student trained on the teacher's soft targets (temperature) and the labels."""
    from emolab.compression.distill import distillation_loss, student_from_teacher, teacher_logits

    o = ctx.options
    data = ctx.train_data()
    ctx.say(f"  teacher targets for {len(data.split('train'))} training examples")
    targets = teacher_logits(ctx.model, data.split("train").inputs, batch_size=ctx.cfg.eval.batch_size)
    student, keep = student_from_teacher(ctx.model)
    before = ctx.score(student)
    ctx.finetune(student, epochs=o.distill_epochs, lr=o.distill_lr, targets=targets,
                 loss=distillation_loss(temperature=o.temperature, alpha=o.alpha))
    return [_saved(ctx, "distill", student,
                   notes=f"student keeps teacher layers {keep}; {o.distill_epochs} epoch(s), T={o.temperature}, "
                         f"alpha={o.alpha} on KL",
                   details={"layers_kept": keep, "accuracy_before_training": before["accuracy"],
                            "train_examples": len(data.split("train"))})]


TEXT, IMAGE = "text", "image"
METHODS: dict[str, tuple[Callable[[Context], list[Candidate]], tuple[str, ...]]] = {
    "fp16": (_half("fp16"), (TEXT, IMAGE)),
    "bf16": (_half("bf16"), (TEXT, IMAGE)),
    "prune-unstructured": (prune_unstructured, (TEXT, IMAGE)),
    "prune-structured": (prune_structured, (TEXT,)),
    "prune-channels": (prune_channels, (IMAGE,)),
    "dynamic-int8": (dynamic_int8, (TEXT, IMAGE)),
    "onnx": (_onnx(False), (TEXT, IMAGE)),
    "onnx-int8": (_onnx(True), (TEXT, IMAGE)),
    "onnx-int8-dynamic": (_onnx(True, dynamic=True), (TEXT,)),
    "distill": (distill, (TEXT,)),
}


def list_methods(kind: str | None = None) -> list[str]:
    return [n for n, (_, kinds) in METHODS.items() if kind is None or kind in kinds]
