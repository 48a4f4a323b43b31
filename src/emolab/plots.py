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


def seed_spread(values: dict[str, list[float]], seeds: list, path: Path) -> Path:
    """Each metric's value per seed (points, labelled) with the mean and ±1 sd band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(values) + 2), 3.6))
    for i, (name, vals) in enumerate(values.items()):
        v = np.asarray(vals, dtype=float)
        mean, sd = v.mean(), v.std(ddof=1) if len(v) > 1 else 0.0
        ax.fill_between([i - 0.3, i + 0.3], mean - sd, mean + sd, alpha=0.2, color=f"C{i}")
        ax.hlines(mean, i - 0.3, i + 0.3, color=f"C{i}")
        ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, color=f"C{i}", zorder=3)
        for x, y, s in zip(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, seeds):
            ax.annotate(str(s), (x, y), textcoords="offset points", xytext=(4, 2), fontsize=7)
    ax.set_xticks(range(len(values)), list(values))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Test metrics per seed (line: mean, band: ±1 sd; seeds {', '.join(map(str, seeds))})")
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
    rising = [h["epoch"] for prev, h in zip(history, history[1:])
              if (h.get("val_loss") or 0) > (prev.get("val_loss") or 0) and (h.get("train_loss") or 0) < (prev.get("train_loss") or 0)]
    if rising and panels and panels[0] == "loss":
        for e in rising:
            axes[0][0].axvspan(e - 0.5, e + 0.5, color="red", alpha=0.1)
        title += " (shaded: validation loss rises while training loss falls)"
    fig.suptitle(title)
    return _save(fig, path)


def per_class_bars(per_class: dict[str, dict[str, float]], path: Path, *, title: str = "Per-class scores") -> Path:
    plt = _plt()
    names = list(per_class)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 3.6))
    for i, metric in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (i - 1) * 0.27, [per_class[n][metric] for n in names], 0.27, label=metric)
    ax.set_xticks(x, names, rotation=45 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=3, loc="lower right")
    ax.set_title(title)
    return _save(fig, path)


def confidence_histogram(right: Sequence[float], wrong: Sequence[float], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    bins = np.linspace(0, 1, 21)
    for values, name in ((right, "right"), (wrong, "wrong")):
        if len(values):  # an empty group has no density (numpy would divide by zero): legend only
            ax.hist(values, bins=bins, alpha=0.6, label=f"{name} (n={len(values)})", density=True)
        else:
            ax.plot([], [], label=f"{name} (n=0)")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title("Confidence of right and wrong predictions")
    return _save(fig, path)


def reliability_diagram(bins: dict[str, np.ndarray], path: Path) -> Path:
    plt = _plt()
    n = bins["count"].sum()
    ece = float((bins["count"] * np.abs(bins["accuracy"] - bins["confidence"])).sum() / max(n, 1))
    centers = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    used = bins["count"] > 0
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(centers[used], bins["accuracy"][used], width=1 / len(centers), alpha=0.7, edgecolor="k", label="accuracy")
    ax.plot(bins["confidence"][used], bins["accuracy"][used], "o-", color="C3", label="mean confidence")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram (ECE {ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def reliability_comparison(bins: dict[str, dict[str, np.ndarray]], path: Path, *, title: str) -> Path:
    """Reliability curves of the same examples before and after calibration (``bins`` keyed ``before`` / ``after``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for (name, b), style in zip(bins.items(), ("o-", "s-")):
        n = b["count"].sum()
        ece = float((b["count"] * np.abs(b["accuracy"] - b["confidence"])).sum() / max(n, 1))
        used = b["count"] > 0
        ax.plot(b["confidence"][used], b["accuracy"][used], style, label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def leaderboard_bars(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test accuracy and macro-F1 per run."""
    plt = _plt()
    names = [r["run"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 3.8))
    for i, (key, label) in enumerate((("test_accuracy", "test accuracy"), ("macro_f1", "test macro-F1"))):
        vals = [r.get(key) or 0 for r in rows]
        ax.bar(x + (i - 0.5) * 0.4, vals, 0.4, label=label)
    low = min([v for r in rows for v in (r.get("test_accuracy"), r.get("macro_f1")) if v] or [0])
    ax.set_ylim(max(0, low - 0.1), 1.0)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    ax.set_title("Leaderboard")
    return _save(fig, path)


def overlay_curves(histories: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Validation loss and macro-F1 per epoch, one line per run (e.g. linear vs cosine schedules)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, hist in histories.items():
        epochs = [h["epoch"] for h in hist]
        axes[0].plot(epochs, [h.get("val_loss") for h in hist], "-o", label=name)
        axes[1].plot(epochs, [h.get("val_macro_f1") for h in hist], "-o", label=name)
    for ax, title in zip(axes, ("validation loss", "validation macro-F1")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return _save(fig, path)


def step_curves(steps: list[dict[str, Any]], path: Path) -> Path:
    """Learning rate, gradient norm (before clipping) and loss at every optimizer step."""
    plt = _plt()
    x = [s["step"] for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    for ax, key, title in zip(axes, ("lr", "grad_norm", "loss"), ("learning rate", "gradient norm (pre-clip)",
                                                                    "training loss")):
        ax.plot(x, [s.get(key) for s in steps], lw=0.8)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def pareto(rows: list[dict[str, Any]], path: Path) -> Path:
    """Compression trade-off: accuracy vs batch-1 latency per method; the Pareto front joined by a line."""
    plt = _plt()
    pts = [(r["latency_p50_ms"], r["accuracy"], r["method"]) for r in rows if r.get("latency_p50_ms")]
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for x, y, name in pts:
        ax.scatter(x, y, s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front, best = [], -np.inf
    for x, y, _ in sorted(pts):
        if y > best:
            front.append((x, y))
            best = y
    if len(front) > 1:
        ax.plot(*zip(*front), "--", color="grey", lw=1, label="Pareto front")
        ax.legend(loc="lower right")
    ax.set_xlabel("latency per example at batch 1 (ms, median)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.set_title("Compression: accuracy vs latency")
    return _save(fig, path)


def sparsity_sweep(points: list[dict[str, Any]], path: Path, *, title: str = "Accuracy vs sparsity") -> Path:
    """Accuracy and macro-F1 against the achieved sparsity, one line per pruning scope."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for scope in dict.fromkeys(p["scope"] for p in points):
        mine = sorted((p for p in points if p["scope"] == scope), key=lambda p: p["sparsity"])
        for ax, key in zip(axes, ("accuracy", "macro_f1")):
            ax.plot([p["sparsity"] for p in mine], [p[key] for p in mine], "-o", label=scope)
    for ax, key in zip(axes, ("accuracy", "macro-F1")):
        ax.set_xlabel("sparsity of the pruned weight matrices")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def face_grid(rows: dict[str, np.ndarray], path: Path, *, title: str = "Sample faces per class") -> Path:
    """One row of grayscale images per class: ``rows`` maps a class name to uint8 ``(k, H, W)``."""
    plt = _plt()
    cols = max((len(v) for v in rows.values()), default=1) or 1
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 1, 1.15 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=255)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    return _save(fig, path)


def captioned_faces(images: Sequence[np.ndarray], captions: Sequence[str], path: Path, *,
                    title: str = "Misclassified faces", cols: int = 6) -> Path:
    """A grid of faces, each with a short caption (e.g. ``true -> predicted (p)``)."""
    plt = _plt()
    n = max(len(images), 1)
    nrows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(1.7 * cols, 1.95 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(captions[i], fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def occlusion_faces(images: Sequence[np.ndarray], maps: Sequence[np.ndarray], captions: Sequence[str],
                    path: Path, *, title: str = "Where the model looked: occlusion maps of misread faces") -> Path:
    """Each face beside its occlusion map overlaid (red: hiding this region lowers the predicted label)."""
    plt = _plt()
    n = max(len(images), 1)
    cols = 4  # two (face, map) pairs per row
    nrows = int(np.ceil(n / 2))
    fig, axes = plt.subplots(nrows, cols, figsize=(7.2, 1.95 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (img, m, cap) in enumerate(zip(images, maps, captions)):
        a, b = axes[i // 2][2 * (i % 2)], axes[i // 2][2 * (i % 2) + 1]
        a.imshow(img, cmap="gray", vmin=0, vmax=255)
        a.set_title(cap, fontsize=7)
        b.imshow(img, cmap="gray", vmin=0, vmax=255)
        scale = max(float(np.abs(m).max()), 1e-9)
        b.imshow(m, cmap="bwr", vmin=-scale, vmax=scale, alpha=0.55)
        b.set_title("occlusion", fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
