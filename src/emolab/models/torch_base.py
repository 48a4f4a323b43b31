"""What every PyTorch-backed classifier shares: the task it hands the training loop, precision switching,
parameter count, weight files, and resizing layers to a saved (pruned) state at load time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from emolab.errors import unknown_name
from emolab.models.registry import Classifier

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class TrainTask:
    """What the loop needs from a modality: the module, indexable datasets of dict examples (each with
    ``labels`` and ``index``), a collate function and, for text, the examples' lengths: training batches
    are grouped by ``train_lengths`` (None, as a text model's ``group_by_length: false`` leaves it: plain
    shuffled batches) and validation batches by ``val_lengths``.

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


class TorchClassifier(Classifier):
    """Base of the classifiers that hold an ``nn.Module`` in ``self.module``. Those that the training loop
    trains (:func:`emolab.training.train`) describe what it needs with :meth:`task`."""

    module: torch.nn.Module
    trains_in_loop = True

    def task(self, dataset: Any, run_cfg: Any) -> TrainTask:
        """The module and the training and validation sets as the loop consumes them."""
        raise NotImplementedError

    def prepare_training(self, run_cfg: Any) -> None:
        """Set up the module for the run's training options before the loop starts (default: nothing)."""

    def to_precision(self, precision: str) -> None:
        if precision not in DTYPES:
            raise unknown_name("precision", precision, list(DTYPES))
        self.dtype = DTYPES[precision]
        self.module.to(self.dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def save_weights(self, folder: Path) -> Path:
        """``folder/model.safetensors`` with the module's state (the folder is created)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        return folder


def fit_shapes(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize every nn.Linear, nn.Conv2d and nn.BatchNorm2d whose saved weight has another shape (pruned
    heads, neurons or channels), so that ``load_state_dict(state)`` fits; attention modules learn their
    new number of heads."""
    for name, sub in list(module.named_modules()):
        for child_name, child in list(sub.named_children()):
            key = f"{name}.{child_name}.weight" if name else f"{child_name}.weight"
            if key not in state or not hasattr(child, "weight") or tuple(state[key].shape) == tuple(child.weight.shape):
                continue
            shape = state[key].shape
            if isinstance(child, nn.Linear):
                setattr(sub, child_name, nn.Linear(shape[1], shape[0], bias=child.bias is not None))
            elif isinstance(child, nn.Conv2d):
                setattr(sub, child_name, nn.Conv2d(shape[1] * child.groups, shape[0], child.kernel_size, child.stride,
                                                   child.padding, child.dilation, child.groups, child.bias is not None))
            elif isinstance(child, nn.BatchNorm2d):
                setattr(sub, child_name, nn.BatchNorm2d(shape[0], child.eps, child.momentum, child.affine,
                                                        child.track_running_stats))
    for sub in module.modules():
        if hasattr(sub, "attention_head_size") and hasattr(sub, "query"):
            sub.all_head_size = sub.query.out_features
            sub.num_attention_heads = sub.query.out_features // sub.attention_head_size
