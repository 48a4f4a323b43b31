"""Image augmentation on whole batches, and test-time augmentation views.

Training batches are transformed with one ``affine_grid`` / ``grid_sample`` call (flip, rotation, shift
by whole pixels, zoom per image, border padding) and random erasing with vectorised masks, on whatever
device the batch is on. Draws come from a seeded generator, so a seeded run is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from emolab.errors import unknown_name
from emolab.models.vision_config import TTA_MODES, AugmentConfig  # noqa: F401  (re-exported)


def _affine(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    u = lambda: torch.rand(n, generator=gen) * 2 - 1  # noqa: E731  uniform in [-1, 1]
    angle = u() * math.radians(cfg.rotation)
    scale = 1 + u() * cfg.scale
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    # whole-pixel shifts (a pixel spans 2 / side in grid coordinates): with no rotation or zoom the samples
    # land on pixel centres, so a shifted face is an exact crop of the border-padded one, not a blurred copy
    h, w = x.shape[-2:]
    tx, ty = torch.round(u() * cfg.shift * w) * 2 / w, torch.round(u() * cfg.shift * h) * 2 / h
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _erase(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): with probability ``p`` one rectangle of 2-25% of the image,
    aspect ratio 0.3-3.3, is filled with uniform noise."""
    n, _, h, w = x.shape
    area = (0.02 + torch.rand(n, generator=gen) * 0.23) * h * w
    aspect = torch.exp(math.log(0.3) + torch.rand(n, generator=gen) * (math.log(3.3) - math.log(0.3)))
    eh = torch.sqrt(area * aspect).clamp(1, h)
    ew = torch.sqrt(area / aspect).clamp(1, w)
    top = torch.rand(n, generator=gen) * (h - eh)
    left = torch.rand(n, generator=gen) * (w - ew)
    on = torch.rand(n, generator=gen) < p
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    mask = ((rows >= top.view(-1, 1, 1)) & (rows < (top + eh).view(-1, 1, 1)) &
            (cols >= left.view(-1, 1, 1)) & (cols < (left + ew).view(-1, 1, 1)) & on.view(-1, 1, 1))
    noise = torch.rand(x.shape, generator=gen)
    return torch.where(mask.unsqueeze(1).to(x.device), noise.to(x.device, x.dtype), x)


class BatchAugmenter:
    """Augments ``batch["pixels"]`` of a training batch. Its generator state is checkpointed with the
    run (``state_dict``), so ``--resume`` draws the same augmentations as an uninterrupted run."""

    def __init__(self, cfg: AugmentConfig, seed: int):
        self.cfg = cfg
        self.geometric = cfg.rotation > 0 or cfg.shift > 0 or cfg.scale > 0
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, batch: dict) -> dict:
        x, cfg, gen = batch["pixels"], self.cfg, self.gen
        if self.geometric:
            x = _affine(x, cfg, gen)
        elif cfg.hflip:  # exact flips, no resampling
            flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if cfg.random_erasing > 0:
            x = _erase(x, cfg.random_erasing, gen)
        return {**batch, "pixels": x}

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])


def batch_augmenter(cfg: AugmentConfig, *, seed: int) -> BatchAugmenter | None:
    """The training-batch augmenter for ``cfg``, or None when nothing is switched on."""
    if not (cfg.hflip or cfg.rotation > 0 or cfg.shift > 0 or cfg.scale > 0 or cfg.random_erasing > 0):
        return None
    return BatchAugmenter(cfg, seed)


def tta_views(x: torch.Tensor, mode: str, crop: int | None = None) -> list[torch.Tensor]:
    """The views whose predictions are averaged: the image (``none``), and its mirror (``flip``), five
    crops, each with its mirror (``ten-crop``), or every crop position on a 2-pixel grid, each with its
    mirror (``dense``: 5 x 5 x 2 = 50 views for 40-pixel crops of 48-pixel faces). For a model that sees a
    central ``crop`` x ``crop`` window, the views are shifted so that window lands on the image's four
    corners and centre (the classic ten-crop) or on the grid's positions; otherwise they are crops of the
    image padded by 2 pixels (ten-crop: centre and corners; dense: 3 x 3 x 2 = 18 views)."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode in ("ten-crop", "dense"):
        h, w = x.shape[-2:]
        pad, offsets = crop_offsets(min(h, w), mode, crop)
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        crops = [padded[..., r:r + h, c:c + w] for r, c in offsets]
        return crops + [c.flip(-1) for c in crops]
    raise unknown_name("eval.tta", mode, TTA_MODES)


def crop_offsets(side: int, mode: str, crop: int | None = None) -> tuple[int, list[tuple[int, int]]]:
    """The border padding and the (row, column) offsets in the padded image of the ``ten-crop`` or ``dense``
    views (before their mirrors): the centre first for ten-crop, row-major for dense."""
    pad = (side - crop) // 2 if crop and crop < side else 2
    if mode == "ten-crop":
        return pad, [(pad, pad)] + [(r, c) for r in (0, 2 * pad) for c in (0, 2 * pad)]
    grid = sorted({*range(0, 2 * pad + 1, 2), 2 * pad})
    return pad, [(r, c) for r in grid for c in grid]
