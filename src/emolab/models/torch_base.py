"""What every PyTorch-backed classifier shares: precision switching, parameter count, weight files."""

from __future__ import annotations

from pathlib import Path

import torch

from emolab.errors import unknown_name

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchClassifier:
    """Mixin for classifiers that hold an ``nn.Module`` in ``self.module``."""

    module: torch.nn.Module

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
