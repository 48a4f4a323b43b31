"""Bulk scoring (``emolab score``): inputs read as a stream of chunks, one ``Predictor`` per process (or per Ray
actor), outputs written chunk by chunk, resumable."""

from emolab.scoring.engine_local import ScoreOptions, ScoreSummary, score
from emolab.scoring.predictor import Predictor

__all__ = ["Predictor", "ScoreOptions", "ScoreSummary", "score"]
