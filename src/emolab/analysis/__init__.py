"""Error analysis: pure functions on saved predictions (no torch, no retraining)."""

from emolab.analysis.errors import confusion_pairs, misclassified, near_ties
from emolab.analysis.tags import TAGS, tag_examples

__all__ = ["TAGS", "confusion_pairs", "misclassified", "near_ties", "tag_examples"]
