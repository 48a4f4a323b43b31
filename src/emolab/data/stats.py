"""``emolab data stats``: split sizes, class counts and shares, text lengths, duplicates and leakage."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import numpy as np

from emolab.records import Dataset


def _label_counts(ds: Dataset, split) -> dict[str, int]:
    names = ds.labels.names
    if split.labels.ndim == 2:
        return {n: int(c) for n, c in zip(names, split.labels.sum(axis=0))}
    counts = np.bincount(split.labels, minlength=len(names))
    return {n: int(c) for n, c in zip(names, counts)}


def _normalise(text: str) -> str:
    return " ".join(text.split())


def dataset_stats(ds: Dataset) -> dict[str, Any]:
    """Everything ``data stats`` shows, as one JSON-ready dict (pure: no printing, no files)."""
    splits: dict[str, Any] = {}
    seen: dict[str, set[str]] = {}
    for name, split in ds.splits.items():
        counts = _label_counts(ds, split)
        total = max(len(split), 1)
        entry: dict[str, Any] = {
            "n": len(split),
            "class_counts": counts,
            "class_shares": {k: round(v / total, 4) for k, v in counts.items()},
        }
        if ds.modality == "text":
            texts = [_normalise(t) for t in split.inputs]
            words = np.array([len(t.split()) for t in texts])
            chars = np.array([len(t) for t in texts])
            entry["words_percentiles"] = {f"p{q}": float(np.percentile(words, q)) for q in (5, 50, 95, 99)} | {
                "max": int(words.max()) if len(words) else 0}
            entry["chars_percentiles"] = {f"p{q}": float(np.percentile(chars, q)) for q in (5, 50, 95, 99)}
            dup = Counter(texts)
            entry["duplicate_texts"] = int(sum(c - 1 for c in dup.values() if c > 1))
            if split.labels.ndim == 1:
                by_text: dict[str, set[int]] = {}
                for t, y in zip(texts, split.labels):
                    by_text.setdefault(t, set()).add(int(y))
                entry["duplicates_with_conflicting_labels"] = int(sum(len(v) > 1 for v in by_text.values()))
            seen[name] = set(texts)
        elif ds.modality == "image":
            images = np.asarray(split.inputs)
            entry["image_shape"] = list(images.shape[1:])
            entry["pixel_mean"] = round(float(images.mean()), 2) if len(images) else 0.0
            entry["pixel_std"] = round(float(images.std()), 2) if len(images) else 0.0
            entry["near_blank_images"] = int((images.reshape(len(images), -1).std(axis=1) < 5).sum())
            digests = [hashlib.sha1(im.tobytes()).hexdigest() for im in images]
            entry["duplicate_images"] = len(digests) - len(set(digests))
            seen[name] = set(digests)
        if split.labels.ndim == 2:
            per_example = split.labels.sum(axis=1)
            entry["labels_per_example"] = {str(k): int(v) for k, v in
                                           zip(*np.unique(per_example, return_counts=True))}
        splits[name] = entry
    leakage = {}
    names = list(seen)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            leakage[f"{a}&{b}"] = len(seen[a] & seen[b])
    return {"dataset": ds.name, "labels": list(ds.labels.names), "multi_label": ds.labels.multi_label,
            "splits": splits, "cross_split_duplicates": leakage, "info": ds.info, "files": ds.files}


def sample_faces(split, names, per_class: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Up to ``per_class`` seeded random images of each class."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, name in enumerate(names):
        idx = np.flatnonzero(split.labels == k)
        out[name] = split.inputs[np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False))]
    return out


def policy_drops(cfg, seed: int = 42) -> dict[str, dict[str, int]]:
    """Examples kept / dropped per split under each multi-label policy of the dataset (GoEmotions)."""
    from dataclasses import replace

    from emolab.data.registry import dataset_spec, load_dataset

    out = {}
    for policy in dataset_spec(cfg.name).multi_label_policies:
        ds = load_dataset(replace(cfg, multi_label_policy=policy, max_train_examples=None, max_eval_examples=None),
                          seed)
        out[policy] = {s: {"kept": len(ds.splits[s]), "dropped": ds.info["dropped"][s]} for s in ds.splits}
    return out


def class_weights(labels: np.ndarray, num_classes: int, mode: bool | str) -> np.ndarray | None:
    """Per-class loss weights from the training labels: ``True`` / ``"balanced"`` gives n / (classes * count),
    ``"sqrt"`` its square root (FER+: a 73x spread between neutral and contempt becomes 8.6x); ``False``: None."""
    if not mode:
        return None
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(float)
    balanced = counts.sum() / (num_classes * np.maximum(counts, 1))
    return np.sqrt(balanced) if mode == "sqrt" else balanced
