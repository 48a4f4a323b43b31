"""Figures from records (matplotlib, headless). Each function takes plain data and writes one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    _plt().close(fig)
    return path


def class_distribution(counts: dict[str, dict[str, int]], path: Path, *, title: str = "Class distribution") -> Path:
    """Grouped bars: one group per label, one bar per split, heights as shares of the split."""
    plt = _plt()
    splits = list(counts)
    labels = list(next(iter(counts.values())))
    x = np.arange(len(labels))
    width = 0.8 / max(len(splits), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(labels) + 3), 4))
    for i, split in enumerate(splits):
        total = max(sum(counts[split].values()), 1)
        shares = [counts[split].get(lab, 0) / total for lab in labels]
        ax.bar(x + (i - (len(splits) - 1) / 2) * width, shares, width, label=f"{split} (n={total})")
    ax.set_xticks(x, labels, rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center")
    ax.set_ylabel("share of split")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def confusion_heatmap(cm: Sequence[Sequence[float]], labels: Sequence[str], path: Path, *,
                      title: str = "Confusion matrix (row-normalised)") -> Path:
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.55 * k))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    return _save(fig, path)


def learning_curves(history: list[dict[str, Any]], path: Path, *, title: str = "Learning curves") -> Path:
    """Train vs validation loss, accuracy and macro-F1 per epoch (whichever the history has)."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    panels = [m for m in ("loss", "accuracy", "macro_f1") if any(f"val_{m}" in h for h in history)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        for prefix, style in (("train", "-o"), ("val", "-s")):
            ys = [h.get(f"{prefix}_{metric}") for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, [np.nan if y is None else y for y in ys], style, label=prefix)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)
