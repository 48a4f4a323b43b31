"""Image runs: which faces were misread and where the model looked.

- a grid of the most confidently misclassified faces, captioned ``true -> predicted (p)``;
- occlusion maps: a grey patch slides over the face, and the drop in the log-probability of the
  predicted label at each position shows the regions the (wrong) decision rests on. Model-agnostic: it
  needs only ``predict_proba(uint8 images) -> (N, K)``.
"""

from __future__ import annotations

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


def face_figures(run_path: Path, preds: Predictions, images: np.ndarray, rows: list[dict[str, Any]], *,
                 predict_proba: Callable[[np.ndarray], np.ndarray] | None = None, top: int = 18,
                 explain_top: int = 8) -> dict[str, str]:
    """Write the misclassified-faces grid into the run (and, given the model's ``predict_proba``, occlusion maps of
    the first ``explain_top`` faces); returns plot name -> path in the run."""
    names = preds.labels.names
    picked = rows[:top]
    captions = [f"{r['true']} → {r['pred']} ({r['confidence']:.2f})" for r in picked]
    grid = plots.captioned_faces([images[r["index"]] for r in picked], captions, run_path / runfiles.MISCLASSIFIED_FACES_PLOT,
                                 title="Most confidently misclassified faces (true → predicted, confidence)")
    result = {"misclassified_faces": str(grid.relative_to(run_path))}
    if predict_proba is not None and picked:
        chosen = picked[:explain_top]
        maps = [occlusion_map(predict_proba, images[r["index"]], names.index(r["pred"])) for r in chosen]
        path = plots.occlusion_faces([images[r["index"]] for r in chosen], maps, captions[:len(chosen)],
                                     run_path / runfiles.OCCLUSION_FACES_PLOT)
        result["occlusion_faces"] = str(path.relative_to(run_path))
    return result
