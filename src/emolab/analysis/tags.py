"""Automatic error tags. Each tag is one readable rule over an example's input and the model's output.

| tag | rule |
|---|---|
| `negation` | the text holds a negator (not, no, never, n't / "n t", cannot, nothing, nobody, without, ...) |
| `hedging` | the text holds a hedge (maybe, perhaps, kind of, sort of, a bit, i guess, i think, probably, ...) |
| `intensifier` | the text holds an intensifier (very, so, really, extremely, totally, absolutely, too, ...) |
| `short` | 4 words or fewer |
| `truncated` | the tokenised text reached the model's ``max_length`` (words x 1.3 when token counts are unknown) |
| `several_emotions` | NRC Emotion Lexicon words of 2+ different emotions (anger, anticipation, disgust, fear, joy, sadness, surprise, trust) |
| `near_tie` | top-1 minus top-2 probability below 0.1 |
| `likely_label_error` | cleanlab flags the given label as a likely error (on held-out probabilities) |
| `low_contrast` | images: pixel standard deviation below 20 (of 255) |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from emolab.analysis.errors import margins
from emolab.errors import EmolabError
from emolab.lexicon import HEDGES, INTENSIFIERS, NEGATORS, lexicon_emotions, nrc_lexicon
from emolab.records import Predictions


def _matcher(words: str) -> Callable[[str], bool]:
    pattern = re.compile(rf"(?<![a-z])({words})(?![a-z])")
    return lambda text: bool(pattern.search(text.lower().replace("’", "'").replace("n't", " n t")))


def _text_rule(fn: Callable[[str], bool]):
    return lambda preds, ctx: np.array([fn(t) for t in (preds.inputs or [])], dtype=bool)


def _truncated(preds: Predictions, ctx: dict[str, Any]) -> np.ndarray:
    max_length = ctx.get("max_length")
    if not max_length or preds.inputs is None:
        return np.zeros(len(preds.ids), dtype=bool)
    lengths = ctx.get("token_lengths")
    if lengths is None:
        lengths = np.array([len(t.split()) * 1.3 for t in preds.inputs])
    return np.asarray(lengths) >= max_length


def _low_contrast(preds: Predictions, ctx: dict[str, Any]) -> np.ndarray:
    images = ctx.get("images")
    if images is None:
        return np.zeros(len(preds.ids), dtype=bool)
    return images.reshape(len(images), -1).std(axis=1) < 20


TAGS: dict[str, tuple[str, Callable[[Predictions, dict], np.ndarray]]] = {
    "negation": ("holds a negator", _text_rule(_matcher(NEGATORS))),
    "hedging": ("holds a hedge", _text_rule(_matcher(HEDGES))),
    "intensifier": ("holds an intensifier", _text_rule(_matcher(INTENSIFIERS))),
    "short": ("4 words or fewer", _text_rule(lambda t: len(t.split()) <= 4)),
    "truncated": ("reached max_length tokens", _truncated),
    "several_emotions": ("NRC words of 2+ emotions", _text_rule(lambda t: len(lexicon_emotions(t)) >= 2)),
    "near_tie": ("top-2 margin < 0.1", lambda p, ctx: margins(p.probs) < 0.1),
    "likely_label_error": ("flagged by cleanlab", lambda p, ctx: np.isin(np.arange(len(p.ids)),
                                                                         ctx.get("label_issues", []))),
    "low_contrast": ("image pixel std < 20", _low_contrast),
}
TEXT_TAGS = ("negation", "hedging", "intensifier", "short", "truncated", "several_emotions", "near_tie",
             "likely_label_error")
IMAGE_TAGS = ("near_tie", "likely_label_error", "low_contrast")


def tag_examples(preds: Predictions, *, modality: str = "text", **ctx: Any) -> dict[str, np.ndarray]:
    """Boolean mask per tag over all examples of ``preds``."""
    names = TEXT_TAGS if modality == "text" else IMAGE_TAGS
    if modality == "text" and nrc_lexicon() is None:
        names = tuple(n for n in names if n != "several_emotions")
    return {name: TAGS[name][1](preds, ctx) for name in names}


def label_issues(preds: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's likely label errors (indices ranked most suspicious first) and every label-quality score."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:  # pragma: no cover - cleanlab is a dependency
        return np.zeros(0, dtype=int), np.ones(len(preds.ids))
    probs = preds.probs / preds.probs.sum(axis=1, keepdims=True)
    labels = np.asarray(preds.y_true, dtype=int)
    present = np.unique(labels)
    if len(present) < 2 or len(labels) < 2 * len(preds.labels):
        return np.zeros(0, dtype=int), np.ones(len(labels))
    issues = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    return np.asarray(issues, dtype=int), get_label_quality_scores(labels, probs)


def require_single_label(preds: Predictions) -> None:
    if preds.labels.multi_label:
        raise EmolabError("error analysis handles single-label runs",
                          hint="for GoEmotions use multi_label_policy: drop or first to analyse errors")


@dataclass(frozen=True)
class Tagging:
    """The error tags of one split: a boolean mask per tag, and the cleanlab flags behind ``likely_label_error``."""

    masks: dict[str, np.ndarray]  # tag -> which examples carry it
    label_issues: np.ndarray  # indices of likely label errors, most suspicious first
    quality: np.ndarray  # cleanlab's label-quality score of every example


def tag_split(preds: Predictions, *, modality: str = "text", max_length: int | None = None,
              images: np.ndarray | None = None) -> Tagging:
    """Every tag of a single-label split; ``images`` (uint8, aligned with ``preds``) feed the image tags."""
    require_single_label(preds)
    issues, quality = label_issues(preds)
    masks = tag_examples(preds, modality=modality, max_length=max_length, label_issues=issues, images=images)
    return Tagging(masks, issues, quality)
