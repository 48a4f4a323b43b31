"""The names of the files in a run directory, in one place: every writer and reader of a run uses these.

Paths are relative to the run directory. A leaf: imports nothing, so any module may name a run's files.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# written by `emolab run`
CONFIG = "config.yaml"  # the resolved config
MANIFEST = "manifest.json"  # environment, data checksums, seed, wall times
METRICS = "metrics.json"  # per split, with intervals; a run is finished when it has one
METRICS_MD = "metrics.md"
HISTORY = "history.jsonl"  # one line per epoch
STEPS = "steps.jsonl"  # one line per logged optimizer step
DATA_STATS = "data_stats.json"
MODEL = "model"  # the saved model folder
CHECKPOINTS = "checkpoints"  # optimizer state for --resume
PLOTS = "plots"
CLASS_DISTRIBUTION_PLOT = "plots/class_distribution.png"
SAMPLE_FACES_PLOT = "plots/sample_faces.png"
LEARNING_CURVES_PLOT = "plots/learning_curves.png"
STEPS_PLOT = "plots/steps.png"

# written by `emolab sanity`, `analyze`, `robustness` and `compress`
SANITY = "sanity.json"
ANALYSIS = "analysis"
ANALYSIS_JSON = "analysis/analysis.json"
ERRORS_CSV = "analysis/errors.csv"
PER_CLASS_PLOT = "analysis/per_class_f1.png"
CONFIDENCE_PLOT = "analysis/confidence.png"
RELIABILITY_PLOT = "analysis/reliability.png"
MISCLASSIFIED_FACES_PLOT = "analysis/misclassified_faces.png"
OCCLUSION_FACES_PLOT = "analysis/occlusion_faces.png"
ROBUSTNESS = "robustness"
ROBUSTNESS_JSON = "robustness/robustness.json"
CALIBRATION = "calibration"  # written by `emolab calibrate` / eval.calibrate
CALIBRATION_JSON = "calibration/calibration.json"
CALIBRATION_MD = "calibration/calibration.md"
CALIBRATION_PLOT = "calibration/reliability.png"
COMPRESSION = "compression"
COMPRESSION_RESULTS = "compression/results.json"
PARETO_PLOT = "compression/pareto.png"


def predictions_npz(split: str) -> str:
    """Ids, true labels and probabilities of one split."""
    return f"predictions_{split}.npz"


def predictions_csv(split: str) -> str:
    """The same predictions as a table, with inputs and predicted labels."""
    return f"predictions_{split}.csv"


def confusion_plot(split: str) -> str:
    return f"plots/confusion_{split}.png"


def sparsity_plot(precision: str) -> str:
    return f"compression/sparsity_{precision}.png"


def name_in_folder(relpath: str) -> str:
    """The file's name inside its folder (``analysis/analysis.json`` -> ``analysis.json``), for writers that fill
    a folder before it takes its place in the run (``compression/`` is written as ``compression.partial``)."""
    return PurePosixPath(relpath).name
