"""Text datasets: dair-ai emotion, GoEmotions (three taxonomies), GLUE SST-2 and a user's own files.

Every reader names the file and line of the first bad row it meets (malformed line, unknown label,
empty text, undecodable bytes), so a user can fix the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from emolab.data.registry import DataConfig, DatasetSpec, PublishedScore, register_dataset
from emolab.data.sources import Source, checksums, resolve
from emolab.errors import DataError
from emolab.records import Dataset, LabelSet, Split

EMOTION_LABELS = ("sadness", "joy", "love", "anger", "fear", "surprise")

EMOTION = DatasetSpec(
    "emotion", modality="text", labels=EMOTION_LABELS, hub_id="dair-ai/emotion", domain="English tweets",
    citation="Saravia et al. (2018). CARER: Contextualized Affect Representations for Emotion Recognition. EMNLP.",
    published=(
        PublishedScore("distilbert-base-uncased-emotion", "accuracy", 0.927, "test",
                       "HF model card bhadresh-savani/distilbert-base-uncased-emotion"),
        PublishedScore("distilbert-base-uncased-emotion", "macro_f1", 0.883, "test, macro", "HF evaluation results"),
        PublishedScore("roberta-base-emotion", "accuracy", 0.931, "test", "bhadresh-savani/roberta-base-emotion"),
        PublishedScore("roberta-base-emotion", "macro_f1", 0.882, "test, macro", "bhadresh-savani/roberta-base-emotion"),
        PublishedScore("albert-base-v2-emotion", "accuracy", 0.936, "test", "bhadresh-savani/albert-base-v2-emotion"),
        PublishedScore("deberta-v3-base", "accuracy", 0.9255, "test", "Emanuel/twitter-emotion-deberta-v3-base"),
        PublishedScore("deberta-v3-base", "macro_f1", 0.879, "test, macro", "Emanuel/twitter-emotion-deberta-v3-base"),
        PublishedScore("deberta-v3-large, mean pooling", "accuracy", 0.931, "test", "practitioner report"),
    ),
)


def _goemotions_scores(taxonomy: str, paper: float, reproduction: float) -> tuple[PublishedScore, ...]:
    split = "test, macro, multi-label"
    return (PublishedScore("BERT-base (paper)", "macro_f1", paper, split, "Demszky et al. 2020", taxonomy),
            PublishedScore("BERT-base (reproduction)", "macro_f1", reproduction, split, "monologg/GoEmotions-pytorch",
                           taxonomy))


GOEMOTIONS = DatasetSpec(
    "goemotions", modality="text", taxonomies=("original", "ekman", "sentiment"),
    multi_label_policies=("multi_label", "drop", "first"), hub_id="google-research-datasets/go_emotions",
    domain="English Reddit comments",
    citation="Demszky et al. (2020). GoEmotions: A Dataset of Fine-Grained Emotions. ACL.",
    published=(_goemotions_scores("original", 0.46, 0.4876) + _goemotions_scores("ekman", 0.64, 0.6148)
               + _goemotions_scores("sentiment", 0.69, 0.6717)),
)

SST2 = DatasetSpec(
    "sst2", modality="text", labels=("negative", "positive"), published_test_split="GLUE dev",
    published_note="SST-2: emolab's test split is the GLUE dev set, the split the published numbers use.",
    hub_id="stanfordnlp/sst2", domain="sentences from English movie reviews",
    citation="Socher et al. (2013). Recursive Deep Models for Semantic Compositionality Over a Sentiment Treebank. "
             "EMNLP; Wang et al. (2019). GLUE. ICLR.",
    published=(
        PublishedScore("DistilBERT", "accuracy", 0.913, "GLUE dev", "Sanh et al. 2019 (HF-verified 0.9106)"),
        PublishedScore("BERT-base", "accuracy", 0.927, "GLUE dev", "Devlin et al. 2019"),
        PublishedScore("RoBERTa-base", "accuracy", 0.948, "GLUE dev", "Liu et al. 2019"),
        PublishedScore("DeBERTa-v3-large", "accuracy", 0.969, "GLUE dev", "He et al. 2021"),
    ),
)

EMOTION_SOURCE = Source(
    "emotion",
    sha256={
        "train.txt": "3ab03d945a6cb783d818ccd06dafd52d2ed8b4f62f0f85a09d7d11870865b190",
        "val.txt": "34faaa31962fe63cdf5dbf6c132ef8ab166c640254ab991af78f3aea375e79ef",
        "test.txt": "60f531690d20127339e7f054edc299a82c627b5ec0dd5d552d53d544e0cfcc17",
    },
    urls={  # the original downloads recorded by the Hugging Face `emotion` loading script
        "train.txt": "https://www.dropbox.com/s/1pzkadrvffbqw6o/train.txt?dl=1",
        "val.txt": "https://www.dropbox.com/s/2mzialpsgf9k5l3/val.txt?dl=1",
        "test.txt": "https://www.dropbox.com/s/ikkqxfdbdec3fuj/test.txt?dl=1",
    },
)

_GOEMO_RAW = "https://raw.githubusercontent.com/google-research/google-research/master/goemotions/data/"
GOEMOTIONS_SOURCE = Source(
    "goemotions",
    sha256={
        "train.tsv": "1c254a142be5c00e80d819b9ae1bbd36d94b2eeb8f4b1271846508d57e57d9c5",
        "dev.tsv": "575489c079c9de1097062a01738f998590d6b7ead66dd1c9fd1d2ba01fd8bc62",
        "test.tsv": "0587b2dd8b27b97352adbfc3fb083d46005c8946657fdc2b1ca8b1cc7f1f8be4",
        "emotions.txt": None,
        "ekman_mapping.json": None,
        "sentiment_mapping.json": None,
    },
    urls={n: _GOEMO_RAW + n for n in
          ("train.tsv", "dev.tsv", "test.tsv", "emotions.txt", "ekman_mapping.json", "sentiment_mapping.json")},
)

SST2_SOURCE = Source(
    "sst2",
    sha256={
        "train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
        "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    },
    archive_url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    members={"train.tsv": "SST-2/train.tsv", "dev.tsv": "SST-2/dev.tsv"},
)


def read_lines(path: Path) -> list[str]:
    """The file's lines as text; undecodable bytes are reported with their line number."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{i}: bytes that are not UTF-8 ({exc.reason} at column {exc.start + 1})",
                            hint="re-save the file as UTF-8") from None
    return out


def _check_text(path: Path, lineno: int, text: str) -> str:
    if not text.strip():
        raise DataError(f"{path}:{lineno}: empty text", hint="remove the line or give it a text")
    return text


def _file_checks(folder: Path, source: Source) -> tuple[dict[str, str], bool]:
    sums = checksums(folder, source.sha256)
    verified = all(exp is None or sums[str(folder / n)] == exp for n, exp in source.sha256.items())
    return sums, verified


# --- dair-ai emotion ------------------------------------------------------------------------------


def read_emotion_file(path: Path, labels: LabelSet, split: str) -> Split:
    """Lines ``text;label`` (the label after the last semicolon)."""
    texts, ys = [], []
    for i, line in enumerate(read_lines(path), start=1):
        if ";" not in line:
            raise DataError(f"{path}:{i}: expected 'text;label', got {line[:60]!r}",
                            hint="each line is a text, a semicolon and one of: " + ", ".join(labels.names))
        text, label = line.rsplit(";", 1)
        _check_text(path, i, text)
        if label.strip() not in labels.names:
            raise DataError(f"{path}:{i}: unknown label {label.strip()!r}",
                            hint="valid labels: " + ", ".join(labels.names))
        texts.append(text)
        ys.append(labels.index(label.strip()))
    ids = np.array([f"{split}-{i}" for i in range(len(texts))])
    return Split(ids, texts, np.array(ys, dtype=np.int64))


@dataclass
class GoEmotionsConfig(DataConfig):
    taxonomy: Literal["original", "ekman", "sentiment"] = "original"  # 28 labels, Ekman's 6 + neutral, or 3 + neutral
    multi_label_policy: Literal["multi_label", "drop", "first"] = "drop"  # examples with several labels


@dataclass
class Sst2Config(DataConfig):
    validation_ratio: float = 0.1  # the seeded stratified slice of train used for validation


@register_dataset(EMOTION)
def load_emotion(cfg: DataConfig, seed: int) -> Dataset:
    folder = resolve(EMOTION_SOURCE, cfg.path, allow_download=cfg.download)
    labels = LabelSet(EMOTION.labels)
    splits = {
        name: read_emotion_file(folder / fname, labels, name)
        for name, fname in (("train", "train.txt"), ("validation", "val.txt"), ("test", "test.txt"))
    }
    sums, verified = _file_checks(folder, EMOTION_SOURCE)
    return Dataset(EMOTION.name, labels, splits, EMOTION.modality, sums, {"checksums_verified": verified})


# --- GoEmotions -----------------------------------------------------------------------------------


def goemotions_taxonomy(folder: Path, taxonomy: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Target label names and a map from the 28 original ids to target ids (from the dataset's json)."""
    original = tuple(read_lines(folder / "emotions.txt"))
    if taxonomy == "original":
        return original, np.arange(len(original))
    fname = {"ekman": "ekman_mapping.json", "sentiment": "sentiment_mapping.json"}[taxonomy]
    mapping = json.loads((folder / fname).read_text(encoding="utf-8"))
    names = tuple(mapping) + ("neutral",)
    to_target = np.full(len(original), -1)
    for target, members in mapping.items():
        for member in members:
            to_target[original.index(member)] = names.index(target)
    to_target[original.index("neutral")] = names.index("neutral")
    missing = [original[i] for i in np.flatnonzero(to_target < 0)]
    if missing:
        raise DataError(f"{folder / fname}: no target for {', '.join(missing)}",
                        hint="every GoEmotions label must appear in the mapping")
    return names, to_target


def read_goemotions_file(path: Path, to_target: np.ndarray, split: str) -> tuple[list[str], list[str], list[list[int]]]:
    """Rows ``text<TAB>ids<TAB>comment_id``; ``ids`` comma-separated original label ids."""
    texts, ids, targets = [], [], []
    for i, line in enumerate(read_lines(path), start=1):
        parts = line.split("\t")
        if len(parts) != 3:
            raise DataError(f"{path}:{i}: expected 3 tab-separated fields (text, label ids, comment id), "
                            f"got {len(parts)}", hint="check for stray tabs in the text")
        text, label_ids, comment_id = parts
        _check_text(path, i, text)
        try:
            originals = [int(x) for x in label_ids.split(",")]
        except ValueError:
            raise DataError(f"{path}:{i}: label ids {label_ids!r} are not comma-separated integers",
                            hint="ids run from 0 to 27 (see emotions.txt)") from None
        if any(not 0 <= x < len(to_target) for x in originals):
            raise DataError(f"{path}:{i}: label id out of range in {label_ids!r}",
                            hint=f"ids run from 0 to {len(to_target) - 1}")
        mapped = list(dict.fromkeys(int(to_target[x]) for x in originals))  # ordered, de-duplicated
        texts.append(text)
        ids.append(comment_id)
        targets.append(mapped)
    return texts, ids, targets


def apply_multi_label_policy(targets: list[list[int]], policy: str, num_labels: int):
    """Returns ``(keep_mask, labels)``: labels are ``(N,)`` ids, or ``(N, K)`` multi-hot for multi_label."""
    keep = np.array([policy != "drop" or len(t) == 1 for t in targets])
    kept = [t for t, k in zip(targets, keep) if k]
    if policy == "multi_label":
        y = np.zeros((len(kept), num_labels), dtype=np.int64)
        for row, t in enumerate(kept):
            y[row, t] = 1
        return keep, y
    return keep, np.array([t[0] for t in kept], dtype=np.int64)


@register_dataset(GOEMOTIONS, config=GoEmotionsConfig)
def load_goemotions(cfg: GoEmotionsConfig, seed: int) -> Dataset:
    folder = resolve(GOEMOTIONS_SOURCE, cfg.path, allow_download=cfg.download)
    names, to_target = goemotions_taxonomy(folder, cfg.taxonomy)
    labels = LabelSet(names, multi_label=cfg.multi_label_policy == "multi_label")
    splits, dropped = {}, {}
    for split, fname in (("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")):
        texts, ids, targets = read_goemotions_file(folder / fname, to_target, split)
        keep, y = apply_multi_label_policy(targets, cfg.multi_label_policy, len(names))
        dropped[split] = int((~keep).sum())
        splits[split] = Split(np.array(ids)[keep], [t for t, k in zip(texts, keep) if k], y)
    sums, verified = _file_checks(folder, GOEMOTIONS_SOURCE)
    info = {"taxonomy": cfg.taxonomy, "multi_label_policy": cfg.multi_label_policy, "dropped": dropped,
            "checksums_verified": verified}
    return Dataset(GOEMOTIONS.name, labels, splits, GOEMOTIONS.modality, sums, info)


# --- SST-2 ----------------------------------------------------------------------------------------


def read_sst2_file(path: Path, split: str) -> Split:
    lines = read_lines(path)
    if not lines or lines[0].split("\t")[:2] != ["sentence", "label"]:
        raise DataError(f"{path}:1: expected the header 'sentence<TAB>label'",
                        hint="use GLUE's SST-2 train.tsv / dev.tsv (test.tsv has no labels)")
    texts, ys = [], []
    for i, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 2 or parts[1].strip() not in ("0", "1"):
            raise DataError(f"{path}:{i}: expected 'sentence<TAB>0|1', got {line[:60]!r}",
                            hint="labels are 0 (negative) and 1 (positive)")
        texts.append(_check_text(path, i, parts[0].strip()))
        ys.append(int(parts[1]))
    return Split(np.array([f"{split}-{i}" for i in range(len(texts))]), texts, np.array(ys, dtype=np.int64))


@register_dataset(SST2, config=Sst2Config)
def load_sst2(cfg: Sst2Config, seed: int) -> Dataset:
    """GLUE SST-2: the labelled dev set is the test split; validation is a seeded stratified slice of train."""
    from sklearn.model_selection import train_test_split

    folder = resolve(SST2_SOURCE, cfg.path, allow_download=cfg.download)
    full = read_sst2_file(folder / "train.tsv", "train")
    train_idx, val_idx = train_test_split(np.arange(len(full)), test_size=cfg.validation_ratio,
                                          random_state=seed, stratify=full.labels)
    splits = {"train": full.subset(np.sort(train_idx)), "validation": full.subset(np.sort(val_idx)),
              "test": read_sst2_file(folder / "dev.tsv", "test")}
    sums, verified = _file_checks(folder, SST2_SOURCE)
    return Dataset(SST2.name, LabelSet(SST2.labels), splits, SST2.modality, sums,
                   {"validation": f"stratified {cfg.validation_ratio:.0%} of train, seed {seed}",
                    "test": "GLUE dev set", "checksums_verified": verified})
