"""``csv``: a user's own CSV / TSV / JSONL / Parquet file(s) with a text and a label column.

Label names are inferred from the training file (or given in ``data.labels``) and frozen into the run
directory, so ids never depend on the order labels appear in a file. Given split files are used as
they are; otherwise a seeded, stratified split by ``validation_ratio`` and ``test_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from emolab.data.registry import DataConfig, DatasetSpec, register_dataset
from emolab.data.sources import sha256_of
from emolab.data.text import read_lines
from emolab.errors import DataError
from emolab.records import Dataset, LabelSet, Split

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
            ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: Path) -> tuple[pd.DataFrame, int]:
    """The table and the file line of its first data row (for error messages)."""
    if not path.is_file():
        raise DataError(f"file not found: {path}", hint="check data.path / data.*_file")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}",
                        hint="use .csv, .tsv, .jsonl or .parquet")
    if kind != "parquet":
        if not any(line.strip() for line in read_lines(path)):  # also names the line of any undecodable bytes
            raise DataError(f"{path}: the file is empty",
                            hint="a CSV / TSV needs a header row (e.g. text,label) and one row per example; "
                                 "JSONL one JSON object per line")
    try:
        if kind == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[]), 2
        if kind == "tsv":
            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[], quoting=3), 2
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False), 1
        return pd.read_parquet(path), 1
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed {kind.upper()} ({exc})",
                        hint="check quoting and the number of fields on that line") from None
    except ValueError as exc:
        raise DataError(f"{path}: malformed {kind.upper()} ({exc})",
                        hint="JSONL needs one JSON object per line" if kind == "jsonl" else
                             "check the header row and the number of fields per line") from None


def _columns(df: pd.DataFrame, path: Path, first_line: int, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    missing = [c for c in (text_col, label_col) if c not in df.columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(map(repr, missing))}",
                        hint=f"columns in the file: {', '.join(map(str, df.columns))}; set data.text_column / "
                             f"data.label_column")
    if len(df) == 0:
        raise DataError(f"{path}: no examples (a header row and nothing under it)",
                        hint=f"add one row per example with its {text_col!r} and {label_col!r}")
    texts, labels = [], []
    for row, (text, label) in enumerate(zip(df[text_col].tolist(), df[label_col].tolist())):
        line = row + first_line
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{line}: empty text in column {text_col!r}",
                            hint="remove the row or give it a text")
        if label is None or (isinstance(label, float) and np.isnan(label)) or str(label).strip() == "":
            raise DataError(f"{path}:{line}: empty label in column {label_col!r}", hint="give every row a label")
        texts.append(text)
        labels.append(str(label).strip())
    return texts, labels


def _infer_labels(values: list[str]) -> tuple[str, ...]:
    unique = set(values)
    try:
        return tuple(sorted(unique, key=lambda v: float(v)))
    except ValueError:
        return tuple(sorted(unique))


def _encode(path: Path, first_line: int, labels: list[str], label_set: LabelSet, given: bool) -> np.ndarray:
    index = {n: i for i, n in enumerate(label_set.names)}
    out = np.empty(len(labels), dtype=np.int64)
    for row, label in enumerate(labels):
        if label not in index:
            where = "data.labels" if given else "the training file's labels"
            raise DataError(f"{path}:{row + first_line}: label {label!r} is not in {where} "
                            f"({', '.join(label_set.names)})",
                            hint="fix the label, or list every label in data.labels")
        out[row] = index[label]
    return out


def _stratified_split(n: int, y: np.ndarray, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    try:
        a, b = train_test_split(idx, test_size=ratio, random_state=seed, stratify=y)
    except ValueError:  # a class with a single example cannot be stratified
        a, b = train_test_split(idx, test_size=ratio, random_state=seed)
    return np.sort(a), np.sort(b)


@dataclass
class CsvConfig(DataConfig):
    """A user's CSV / TSV / JSONL / Parquet files: the columns, optional fixed label names, and either given
    split files or a seeded stratified split."""

    name: str = "csv"
    text_column: str = "text"  # column holding the input text
    label_column: str = "label"  # column holding the label name
    labels: Optional[list] = None  # fixed label names in this order; default: the training labels, sorted
    train_file: Optional[str] = None  # training file; default: data.path itself
    validation_file: Optional[str] = None  # validation file; default: a stratified validation_ratio of train
    test_file: Optional[str] = None  # test file; default: a stratified test_ratio of train
    validation_ratio: float = 0.1  # without a validation file
    test_ratio: float = 0.1  # without a test file


CSV = DatasetSpec("csv", modality="text")  # labels: data.labels, else the training file's


@register_dataset(CSV, config=CsvConfig)
def load_files(cfg: CsvConfig, seed: int) -> Dataset:
    base = Path(cfg.path).expanduser() if cfg.path else None
    if base is not None and base.is_file():
        files = {"train": base}
    else:
        if cfg.train_file is None and base is None:
            raise DataError("dataset 'csv' needs a file", hint="set data.path to a file, or data.train_file "
                                                               "(and optionally validation_file / test_file)")
        files = {split: (base / f if base else Path(f)) for split, f in
                 (("train", cfg.train_file), ("validation", cfg.validation_file), ("test", cfg.test_file)) if f}
        if "train" not in files:
            raise DataError("dataset 'csv': data.train_file is not set", hint="name the training file")
    raw = {}
    for split, path in files.items():
        df, first_line = read_table(path)
        raw[split] = (path, first_line, *_columns(df, path, first_line, cfg.text_column, cfg.label_column))
    given = cfg.labels is not None
    names = tuple(str(x) for x in cfg.labels) if given else _infer_labels(raw["train"][3])
    if len(names) < 2:
        raise DataError(f"{files['train']}: only one label ({names[0]!r}) in column {cfg.label_column!r}",
                        hint="a classifier needs at least two classes; check data.label_column")
    label_set = LabelSet(names)
    splits = {}
    for split, (path, first_line, texts, labels) in raw.items():
        y = _encode(path, first_line, labels, label_set, given)
        ids = np.array([f"{path.stem}-{i + first_line}" for i in range(len(texts))])
        splits[split] = Split(ids, texts, y)
    train = splits["train"]
    if "test" not in splits:
        rest, test = _stratified_split(len(train), train.labels, cfg.test_ratio, seed)
        splits["test"], train = train.subset(test), train.subset(rest)
    if "validation" not in splits:
        rest, val = _stratified_split(len(train), train.labels, cfg.validation_ratio, seed)
        splits["validation"], train = train.subset(val), train.subset(rest)
    splits["train"] = train
    ordered = {k: splits[k] for k in ("train", "validation", "test")}
    sums = {str(p): sha256_of(p) for p in files.values()}
    return Dataset(CSV.name, label_set, ordered, CSV.modality, sums,
                   {"files": {k: str(v) for k, v in files.items()}, "labels_given": given})
