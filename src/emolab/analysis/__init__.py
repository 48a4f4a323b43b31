"""Error analysis as pure functions on predictions, inputs and probabilities (numpy, no torch, no model loading,
no training): ranked errors, confusion pairs and near-ties (``errors``), error tags and cleanlab's likely label
errors (``tags``), occlusion attributions given a ``predict_proba`` (``attributions``; ``faces`` for images, with
the figures), cleanlab's flags against a second opinion (``label_check``), and the whole split as a JSON-ready dict
with its comparison to a baseline's predictions (``summary``). ``emolab analyze`` (:mod:`emolab.analyze`) gathers
their inputs from a run: its predictions and model, the images, a baseline model fitted on the same data."""

from emolab.analysis.errors import confusion_pairs, misclassified, near_ties
from emolab.analysis.tags import TAGS, tag_examples

__all__ = ["TAGS", "confusion_pairs", "misclassified", "near_ties", "tag_examples"]
