"""Error analysis of a run's saved predictions: errors, confusion pairs, tags and label issues are pure functions
(no torch). ``emolab analyze`` (:mod:`emolab.analysis.analyze`) also reloads the run's model for occlusion
attributions and fits the classical baseline (TF-IDF, or logistic regression on pixels) the run is compared with."""

from emolab.analysis.errors import confusion_pairs, misclassified, near_ties
from emolab.analysis.tags import TAGS, tag_examples

__all__ = ["TAGS", "confusion_pairs", "misclassified", "near_ties", "tag_examples"]
