"""Image runs: which faces were misread and where the model looked.

- a grid of the most confidently misclassified faces, captioned ``true -> predicted (p)``;
- occlusion maps: a grey patch slides over the face, and the drop in the log-probability of the
  predicted label at each position shows the regions the (wrong) decision rests on. Model-agnostic: it
  needs only ``predict_proba(uint8 images) -> (N, K)``;
- the classical baseline for the base-vs-trained comparison: logistic regression on 24x24 pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emolab import plots, runfiles
from emolab.records import Predictions


def occlusion_map(predict_proba: Callable[[np.ndarray], np.ndarray], image: np.ndarray, target: int, *,
                  patch: int = 8, stride: int = 4) -> np.ndarray:
    """``(H, W)`` map of the mean log-probability drop of ``target`` when a patch covering the pixel is grey."""
    h, w = image.shape
    spots = [(r, c) for r in range(0, h - patch + 1, stride) for c in range(0, w - patch + 1, stride)]
    variants = np.repeat(image[None], len(spots) + 1, axis=0)
    fill = np.uint8(round(float(image.mean())))
    for k, (r, c) in enumerate(spots, start=1):
        variants[k, r:r + patch, c:c + patch] = fill
    logp = np.log(np.clip(predict_proba(variants)[:, target], 1e-12, 1.0))
    total, count = np.zeros((h, w)), np.zeros((h, w))
    for (r, c), lp in zip(spots, logp[1:]):
        total[r:r + patch, c:c + patch] += logp[0] - lp
        count[r:r + patch, c:c + patch] += 1
    return total / np.maximum(count, 1)


def face_figures(run_path: Path, preds: Predictions, images: np.ndarray, rows: list[dict[str, Any]], out: Path, *,
                 top: int = 18, explain: bool = True, explain_top: int = 8) -> dict[str, str]:
    """Write the misclassified-faces grid (and occlusion maps); returns plot name -> path in the run."""
    names = preds.labels.names
    picked = rows[:top]
    captions = [f"{r['true']} → {r['pred']} ({r['confidence']:.2f})" for r in picked]
    grid = plots.captioned_faces([images[r["index"]] for r in picked], captions, run_path / runfiles.MISCLASSIFIED_FACES_PLOT,
                                 title="Most confidently misclassified faces (true → predicted, confidence)")
    result = {"misclassified_faces": str(grid.relative_to(run_path))}
    if explain and picked:
        from emolab.models import load_model

        model = load_model(run_path)
        chosen = picked[:explain_top]
        maps = [occlusion_map(model.predict_proba, images[r["index"]], names.index(r["pred"])) for r in chosen]
        path = plots.occlusion_faces([images[r["index"]] for r in chosen], maps, captions[:len(chosen)],
                                     run_path / runfiles.OCCLUSION_FACES_PLOT)
        result["occlusion_faces"] = str(path.relative_to(run_path))
    return result


def pixel_baseline_scores(data_cfg, seed: int) -> dict[str, Any]:
    """Logistic regression on standardised 24x24 (2x2-averaged) pixels, trained and scored on the run's data."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from emolab.data import load_dataset
    from emolab.metrics import classification_metrics

    ds = load_dataset(data_cfg, seed)

    def features(x: np.ndarray) -> np.ndarray:
        n, h, w = x.shape
        return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).reshape(n, -1)

    train, test = ds.split("train"), ds.split("test")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.1))
    with warnings.catch_warnings():  # said in the report's row instead of a warning mid-run; others still show
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(features(train.inputs), train.labels)
    model = "logistic regression on 24x24 pixels"
    if clf[-1].n_iter_.max() >= clf[-1].max_iter:
        model += f" (lbfgs stopped at its {clf[-1].max_iter}-iteration cap before converging)"
    probs = np.zeros((len(test), len(ds.labels)))
    probs[:, clf.classes_] = clf.predict_proba(features(test.inputs))
    m = classification_metrics(test.labels, probs, ds.labels.names)
    return {"model": model, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "weighted_f1": m["weighted_f1"], "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()},
            "_ids": np.asarray(test.ids).astype(str), "_pred": probs.argmax(axis=1)}
