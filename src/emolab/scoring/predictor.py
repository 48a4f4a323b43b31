"""``Predictor``: a saved model loaded once, called on batches of rows (a pandas DataFrame, a dict of numpy
arrays or a list of texts / image paths), answering one table of predictions.

The same object scores every chunk of ``emolab score`` (local engine), every batch of a Ray Data actor
(``map_batches(Predictor, ...)``, :mod:`emolab.scoring.engine_ray`) and a DataFrame in a notebook, so the
three give the same columns and the same numbers:

- the batch's own columns except the input column (unless ``keep_input``): row numbers, ids, kept columns;
- ``label`` (the most probable label; empty for a blank or unreadable input), ``score`` (its probability),
  ``reason`` (empty, or why there is no label: ``blank``, ``unreadable: ...``, ``no face found``);
- multi-label runs: ``labels``, every label at or over the run's tuned threshold (``;``-separated);
- one ``p_<label>`` column per label;
- face models: one row per face (``face``, its box ``xmin ymin xmax ymax`` in the photo's pixels and the
  ``detector_score``), and one row for a photo without a face or that cannot be read.

Texts are sorted by length within a call before being cut into batches of ``batch_size`` (so a batch pads
to texts of similar length); the answers come back in the input order.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emolab import runfiles
from emolab.errors import EmolabError
from emolab.faces.detectors import DEFAULT_MIN_FACE
from emolab.rundir import decision_thresholds
from emolab.scoring.readers import UNREADABLE

FACE_COLUMNS = ("face", "xmin", "ymin", "xmax", "ymax", "detector_score")


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _model_folder(path: Path) -> Path:
    from emolab.models.registry import MODEL_FILE

    return path / "model" if (path / "model" / MODEL_FILE).is_file() else path


def model_fingerprint(path: Path) -> str:
    """A digest of a saved model folder (its card, and every file's name, size and modification time) and of
    the run's ``metrics.json`` (tuned thresholds): a scoring may only be resumed with the same model."""
    h = hashlib.sha256()
    folder = _model_folder(path)
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    metrics = path / runfiles.METRICS
    if metrics.is_file():
        h.update(metrics.read_bytes())
    return h.hexdigest()[:16]


class Predictor:
    """A saved run, model folder, ONNX export or compressed model, loaded once.

    ``Predictor("runs/emotion-tfidf")(["i feel great", ""])`` -> a DataFrame with ``label``, ``score``,
    ``reason`` and ``p_<label>`` columns; ``Predictor(path, column="review")(frame)`` scores the ``review``
    column of a DataFrame and carries its other columns through. Face models read image paths (``column``
    ``path`` by default) through the face detector, as ``emolab predict`` does.
    """

    def __init__(self, path: str | Path, *, column: str | None = None, keep_input: bool = False,
                 batch_size: int | None = None, threads: int | None = None, detect: bool = True,
                 detector: str | None = None, min_face: int = DEFAULT_MIN_FACE, align: bool = False):
        from emolab.models import load_model, model_card

        self.path = Path(path)
        if not self.path.exists():
            raise EmolabError(f"model not found: {self.path}", hint="give a run directory, its model/ folder or an "
                              "`emolab export` folder")
        self.card = model_card(self.path)
        self.image = bool(self.card.image)
        self.column = column or ("path" if self.image else "text")
        self.keep_input = keep_input or self.image  # faces: which photo each row is from
        self.model = load_model(self.path)
        if threads:
            import sys

            if "torch" in sys.modules:  # a PyTorch model (ONNX exports never load torch)
                sys.modules["torch"].set_num_threads(threads)
            self.model.set_threads(threads)
        self.names = tuple(self.model.labels.names)
        self.multi_label = bool(self.model.labels.multi_label)
        self.thresholds = decision_thresholds(self.path, self.names, calibrated=True) if self.multi_label else None
        # A classical model answers a whole chunk in one call fastest; neural models pad each batch.
        self.batch_size = batch_size or (1 << 30 if self.card.family == "classical" else 64)
        self.photo = None
        if self.image:
            from emolab.faces.detectors import DEFAULT_DETECTOR
            from emolab.faces.photos import PhotoPredictor
            from emolab.pipeline import face_detector

            det = face_detector(detector or DEFAULT_DETECTOR, align, lambda _m: None) if detect else None
            self.photo = PhotoPredictor(self.model, self.card.side, det, min_face, align)

    @property
    def prob_columns(self) -> list[str]:
        return [f"p_{n}" for n in self.names]

    def output_columns(self, carried: list[str]) -> list[str]:
        """The answer's columns, in order, for a batch whose carried columns are ``carried``."""
        cols = list(carried) + (list(FACE_COLUMNS) if self.image else []) + ["label", "score"]
        return cols + (["labels"] if self.multi_label else []) + ["reason"] + self.prob_columns

    # --- entry points ---
    def __call__(self, batch: pd.DataFrame | dict | list) -> pd.DataFrame | dict:
        """Predictions for a batch; a dict of numpy arrays (Ray's ``batch_format="numpy"``) is answered as one."""
        if isinstance(batch, dict):
            out = self.predict_frame(pd.DataFrame({k: list(v) if np.ndim(v) > 1 else v for k, v in batch.items()}))
            return {c: out[c].to_numpy() for c in out.columns}
        if isinstance(batch, pd.DataFrame):
            return self.predict_frame(batch)
        return self.predict_frame(pd.DataFrame({self.column: list(batch)}))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.column not in frame.columns:
            from emolab.errors import did_you_mean

            raise EmolabError(f"no column {self.column!r} in the batch{did_you_mean(self.column, frame.columns)}",
                              hint=f"columns there: {', '.join(map(str, frame.columns))}")
        carried = frame if self.keep_input else frame.drop(columns=[self.column])
        inputs = frame[self.column].tolist()
        if self.image:
            return self._faces(carried.reset_index(drop=True), inputs)
        return self._texts(carried.reset_index(drop=True), inputs)

    # --- texts ---
    def predict_texts(self, texts: list) -> tuple[np.ndarray, list[str]]:
        """``(probabilities (N, K), reasons)``; a blank or unreadable text gets a row of NaN and its reason."""
        probs = np.full((len(texts), len(self.names)), np.nan)
        reasons = [""] * len(texts)
        good, strings = [], []
        for i, t in enumerate(texts):
            if isinstance(t, bytes):
                try:
                    t = t.decode("utf-8")
                except UnicodeDecodeError as exc:
                    reasons[i] = f"unreadable: not UTF-8 ({exc.reason} at byte {exc.start})"
                    continue
            if isinstance(t, str) and t.startswith(UNREADABLE):
                reasons[i] = t[1:]
                continue
            if _blank(t):
                reasons[i] = "blank"
                continue
            good.append(i)
            strings.append(str(t))
        if good:
            order = sorted(range(len(strings)), key=lambda j: len(strings[j]))
            sorted_probs = np.empty((len(order), len(self.names)))
            for start in range(0, len(order), self.batch_size):
                part = order[start:start + self.batch_size]
                sorted_probs[start:start + len(part)] = self.model.predict_proba([strings[j] for j in part],
                                                                                 batch_size=min(self.batch_size, 1024))
            back = np.empty_like(sorted_probs)
            back[order] = sorted_probs
            probs[good] = back
        return probs, reasons

    def _labels(self, probs: np.ndarray, reasons: list[str]) -> dict[str, Any]:
        ok = np.array([not r for r in reasons], dtype=bool)
        top = np.where(ok, np.nan_to_num(probs, nan=-1.0).argmax(axis=1), 0) if len(probs) else np.zeros(0, int)
        names = np.array(self.names, dtype=object)
        cols: dict[str, Any] = {
            "label": np.where(ok, names[top], ""),
            "score": np.where(ok, probs[np.arange(len(probs)), top] if len(probs) else np.zeros(0), np.nan),
        }
        if self.multi_label:
            cols["labels"] = self.model.labels.decide(np.where(ok[:, None], probs, np.nan), self.thresholds)
        cols["reason"] = reasons
        for j, c in enumerate(self.prob_columns):
            cols[c] = probs[:, j]
        return cols

    def _texts(self, carried: pd.DataFrame, texts: list) -> pd.DataFrame:
        probs, reasons = self.predict_texts(texts)
        out = pd.DataFrame(self._labels(probs, reasons))
        out["label"] = out["label"].astype(object)
        return pd.concat([carried, out], axis=1)

    # --- faces ---
    def _faces(self, carried: pd.DataFrame, paths: list) -> pd.DataFrame:
        from emolab.errors import DataError
        from emolab.faces.photos import FaceRow, read_photo

        rows: list[FaceRow] = []
        source, reasons = [], []
        for i, p in enumerate(paths):
            found, reason = [FaceRow(str(p), None, None)], "blank" if _blank(p) else ""
            if not reason:
                try:
                    found = self.photo.faces(str(p), *read_photo(Path(str(p))))
                    reason = "" if found[0].face is not None else "no face found"
                except (DataError, FileNotFoundError, OSError) as exc:
                    reason = f"unreadable: {getattr(exc, 'message', None) or exc}"
            rows += found
            source += [i] * len(found)
            reasons += ["" if row.face is not None else reason for row in found]
        probs = np.full((len(rows), len(self.names)), np.nan)
        faced = [k for k, row in enumerate(rows) if row.face is not None]
        if faced:
            probs[faced] = self.model.predict_proba(np.stack([rows[k].crop for k in faced]),
                                                    batch_size=min(self.batch_size, 256))
        face_cols: dict[str, list] = {c: [] for c in FACE_COLUMNS}
        for row in rows:
            box = row.photo_box() or {}
            face_cols["face"].append(row.face)
            for k in ("xmin", "ymin", "xmax", "ymax"):
                face_cols[k].append(box.get(k))
            face_cols["detector_score"].append(float(box["score"]) if box else None)
        frame = carried.iloc[source].reset_index(drop=True)
        faces = pd.DataFrame({c: pd.array(v, dtype="Int64") for c, v in face_cols.items() if c != "detector_score"})
        faces["detector_score"] = pd.array(face_cols["detector_score"], dtype="Float64")
        out = pd.DataFrame(self._labels(probs, reasons))
        out["label"] = out["label"].astype(object)
        return pd.concat([frame, faces, out], axis=1)
