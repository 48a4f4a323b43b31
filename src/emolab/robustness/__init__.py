"""Robustness: seeded perturbations of test inputs (text and face crops) and how a run's predictions move."""

from emolab.robustness.image import CORRUPTIONS, corrupt
from emolab.robustness.text import PERTURBATIONS, perturb

__all__ = ["CORRUPTIONS", "PERTURBATIONS", "corrupt", "perturb"]
