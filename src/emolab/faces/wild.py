"""Evaluation in the wild: a labelled folder of real photos (``class/*.jpg``, the image-folder layout) scored
through the detector, so a user sees how accuracy on FER2013 crops carries over to real pictures.

Each photo's largest face is classified. Reported: the detection rate, accuracy / macro-F1 / per-class
table on the photos whose face was found, an end-to-end accuracy that counts photos without a found face
as wrong, and a contact sheet of the crops with their predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emolab.errors import DataError
from emolab.faces.detectors import DEFAULT_MIN_FACE, Detector
from emolab.faces.photos import face_crops, image_files, read_photo


def labelled_photos(folder: Path, names: tuple[str, ...]) -> list[tuple[Path, int]]:
    """``(photo, label id)`` for every image under ``folder/<class>/``; class folders must be model labels."""
    if not folder.is_dir():
        raise DataError(f"photo folder not found: {folder}", hint="give a folder holding <class>/*.jpg")
    out = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if class_dir.name not in names:
            raise DataError(f"{class_dir}: class folder {class_dir.name!r} is not one of the model's labels",
                            hint=f"name the class folders after the labels: {', '.join(names)}")
        out += [(f, names.index(class_dir.name)) for f in image_files(class_dir)]
    if not out:
        raise DataError(f"{folder}: no photos found", hint=f"expected {folder}/<class>/*.jpg (or .png)")
    return out


def evaluate_photos(model, side: int, folder: Path, detector: Detector, *, min_face: int = DEFAULT_MIN_FACE, align: bool = False,
                    sheet: Path | None = None) -> dict[str, Any]:
    from emolab import plots
    from emolab.metrics import classification_metrics

    names = model.labels.names
    photos = labelled_photos(folder, names)
    crops, found_labels, files, missed = [], [], [], []
    for path, label in photos:
        faces = face_crops(read_photo(path)[0], side, detector, min_face, align)
        if not faces:
            missed.append(str(path))
            continue
        crops.append(faces[0][1])  # the largest face
        found_labels.append(label)
        files.append(str(path))
    result: dict[str, Any] = {"detector": detector.name, "aligned": align, "photos": len(photos),
                              "faces_found": len(crops),
                              "detection_rate": len(crops) / len(photos), "missed": missed}
    if crops:
        probs = model.predict_proba(np.stack(crops))
        y = np.array(found_labels)
        metrics = classification_metrics(y, probs, names)
        result.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"], per_class=metrics["per_class"],
                      confusion_matrix=metrics["confusion_matrix"],
                      end_to_end_accuracy=float((probs.argmax(1) == y).sum() / len(photos)))
        if sheet is not None:
            captions = [f"{names[t]} -> {names[int(p.argmax())]} ({p.max():.2f})" for t, p in zip(y, probs)]
            plots.captioned_faces(crops[:60], captions[:60], sheet,
                                  title=f"{folder.name}: crops found by the detector (true -> predicted)")
            result["contact_sheet"] = str(sheet)
    return result
