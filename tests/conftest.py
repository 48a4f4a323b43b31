"""Shared fixtures: tiny data written by the tests, a tiny random encoder config, the shared datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOLAB_DATA_DIR") or ROOT.parent / "shared" / "data")

if SHARED.is_dir():
    os.environ.setdefault("EMOLAB_DATA_DIR", str(SHARED))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_ENCODER = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                "max_position_embeddings": 64}

WORDS = {
    "joy": ["happy", "glad", "delighted", "cheerful", "great"],
    "anger": ["furious", "angry", "annoyed", "mad", "irritated"],
    "fear": ["scared", "afraid", "nervous", "terrified", "anxious"],
}


def make_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Short synthetic sentences whose label is given away by one word (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    labels = list(WORDS)
    texts, ys = [], []
    for i in range(n):
        lab = labels[i % len(labels)]
        word = WORDS[lab][rng.integers(len(WORDS[lab]))]
        filler = " ".join(rng.choice(["today", "really", "so", "i", "feel", "very", "quite", "now"], size=3))
        texts.append(f"i feel {word} {filler}")
        ys.append(lab)
    return texts, ys


def multi_label_dataset(n: int = 60):
    """A toy multi-label text dataset: one word gives a label away, every fifth text carries a second label."""
    from emolab.records import Dataset, LabelSet, Split

    texts, ys = make_texts(n)
    names = ("anger", "fear", "joy")
    y = np.zeros((n, 3), dtype=np.int64)
    for i, lab in enumerate(ys):
        y[i, names.index(lab)] = 1
        if i % 5 == 0:
            y[i, (names.index(lab) + 1) % 3] = 1
    split = Split(np.array([str(i) for i in range(n)]), texts, y)
    return Dataset("toy", LabelSet(names, multi_label=True), {"train": split, "validation": split, "test": split})


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    import pandas as pd

    texts, ys = make_texts(120)
    path = tmp_path / "mine.csv"
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(path, index=False)
    return path


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "emotion" / "train.txt").is_file():
        pytest.skip(f"shared datasets not found at {SHARED} (set EMOLAB_DATA_DIR)")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EMOLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def crash_after_first_epoch(msg: str) -> None:
    """A ``say`` callback that interrupts a run once its first epoch is logged (for resume tests)."""
    if msg.startswith("epoch 1:"):
        raise KeyboardInterrupt
