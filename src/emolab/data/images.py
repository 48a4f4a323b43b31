"""Facial-expression datasets: FER2013 (Kaggle csv), FER+ (Microsoft's 10-annotator relabelling of the
same images) and an image-folder layout (``train/<class>/*.png``, as the Kaggle image release ships).

Images stay uint8 ``(N, H, W)`` in memory (FER2013: 35k x 48 x 48 = 82 MB); models convert per batch.
A row whose pixels are malformed stops loading with its file and line, unless ``data.skip_bad_rows``
is set, in which case it is skipped and counted in ``Dataset.info``.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from emolab.data.registry import DataConfig, DatasetSpec, PublishedScore, register_dataset
from emolab.data.sources import cache_dir, checksums
from emolab.errors import DataError
from emolab.faces.detectors import DEFAULT_DETECTOR, DEFAULT_MIN_FACE, detector_class, list_detectors
from emolab.faces.photos import image_files
from emolab.labels import FER2013_LABELS
from emolab.records import FACE_SIDE, Dataset, LabelSet, Split

FERPLUS_LABELS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_COLUMNS = FERPLUS_LABELS + ("unknown", "NF")
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def find_file(cfg_path: str | None, folder_name: str, stems: tuple[str, ...]) -> Path:
    """``<stem>`` or ``<stem>.gz`` in ``data.path`` (a folder or the file itself), ``$EMOLAB_DATA_DIR/<folder>``
    or the cache. Kaggle's FER2013 download needs a login, so there is no automatic download."""
    if cfg_path and Path(cfg_path).expanduser().is_file():
        return Path(cfg_path).expanduser()
    folders = [Path(cfg_path).expanduser()] if cfg_path else []
    if not cfg_path and os.environ.get("EMOLAB_DATA_DIR"):
        folders.append(Path(os.environ["EMOLAB_DATA_DIR"]).expanduser() / folder_name)
    if not cfg_path:
        folders.append(cache_dir() / folder_name)
    for folder in folders:
        for stem in stems:
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
    raise DataError(
        f"{' / '.join(stems)} not found in {' or '.join(str(f) for f in folders) or 'any folder'}",
        hint=f"download it from Kaggle ('Challenges in Representation Learning: Facial Expression Recognition "
             f"Challenge'; FER+ from github.com/microsoft/FERPlus) and put it in EMOLAB_DATA_DIR/{folder_name}/, "
             f"or give data.path",
    )


def parse_pixels(text: str, path: Path, line: int, side: int = FACE_SIDE) -> np.ndarray:
    """A space-separated string of ``side * side`` values in 0..255 -> uint8 ``(side, side)``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # older numpy warns at a non-number; the length check catches it
            values = np.fromstring(text, dtype=np.int32, sep=" ")
    except ValueError:  # newer numpy raises at a non-number
        values = np.zeros(0, np.int32)
    if values.size != side * side:
        bad = next((tok for tok in text.split() if not tok.lstrip("-").isdigit()), None)
        why = f"unparseable value {bad!r}" if bad is not None else f"{len(text.split())} values"
        raise DataError(f"{path}:{line}: pixels: {why}, expected {side * side} integers in 0..255",
                        hint="fix or remove the row, or set data.skip_bad_rows: true to skip such rows")
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{path}:{line}: pixels: value {int(values.max() if values.max() > 255 else values.min())} "
                        "outside 0..255", hint="fix or remove the row, or set data.skip_bad_rows: true")
    return values.astype(np.uint8).reshape(side, side)


def read_fer_csv(path: Path, *, skip_bad_rows: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The Kaggle ``emotion,pixels,Usage`` file -> (images uint8, labels, usage strings, info).

    Rows keep their file order (FER+ aligns with it); skipped rows get label -1 and usage ``""``."""
    images, labels, usage, skipped = [], [], [], []
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["emotion", "pixels", "Usage"]:
            raise DataError(f"{path}:1: expected the header 'emotion,pixels,Usage', got {header}",
                            hint="use the Kaggle fer2013.csv (or .csv.gz) file unchanged")
        for line, row in enumerate(reader, start=2):
            try:
                if len(row) != 3:
                    raise DataError(f"{path}:{line}: expected 3 fields (emotion,pixels,Usage), got {len(row)}",
                                    hint="fix or remove the row, or set data.skip_bad_rows: true")
                if row[2] not in USAGE_TO_SPLIT:
                    raise DataError(f"{path}:{line}: unknown Usage {row[2]!r}",
                                    hint="Usage must be Training, PublicTest or PrivateTest")
                if not row[0].isdigit() or int(row[0]) >= len(FER2013_LABELS):
                    raise DataError(f"{path}:{line}: emotion {row[0]!r} is not a class id 0..6",
                                    hint="0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral")
                images.append(parse_pixels(row[1], path, line))
                labels.append(int(row[0]))
                usage.append(row[2])
            except DataError:
                if not skip_bad_rows:
                    raise
                skipped.append(line)
                images.append(np.zeros((FACE_SIDE, FACE_SIDE), np.uint8))
                labels.append(-1)
                usage.append("")
    info = {"rows": len(labels), "skipped_rows": len(skipped), "skipped_lines": skipped[:20]}
    empty = np.zeros((0, FACE_SIDE, FACE_SIDE), np.uint8)
    return (np.stack(images) if images else empty), np.array(labels, np.int64), np.array(usage), info


def _splits(images, labels, usage, keep, soft=None) -> dict[str, Split]:
    out = {}
    for usage_name, split in USAGE_TO_SPLIT.items():
        idx = np.flatnonzero((usage == usage_name) & keep)
        out[split] = Split(np.array([f"row-{i}" for i in idx]), images[idx], labels[idx],
                           None if soft is None else soft[idx])
    return out


# FER+ class -> FER2013 class (contempt has none)
FERPLUS_TO_FER2013 = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
                      "anger": "angry", "disgust": "disgust", "fear": "fear"}


@dataclass
class Fer2013Config(DataConfig):
    skip_bad_rows: bool = False  # skip (and count) rows with malformed pixels instead of failing


@dataclass
class FerPlusConfig(Fer2013Config):
    label_mode: Literal["majority", "votes"] = "majority"  # the majority label, or train on the vote shares


@dataclass
class ImageFolderConfig(DataConfig):
    labels: Optional[list] = None  # fixed class names; default: the train folder's class folders, sorted
    image_size: int = 48  # images are converted to grayscale and resized to this square
    validation_ratio: float = 0.1  # without a validation/ folder
    detect_faces: bool = False  # real photos: find the largest face and crop it like FER2013 frames faces
    min_face: int = DEFAULT_MIN_FACE  # with detect_faces: smallest face side in pixels
    detector: str = DEFAULT_DETECTOR  # with detect_faces: a face detector (emolab.faces.detectors: mtcnn, haar)
    align_faces: bool = False  # with detect_faces: turn each crop so the eyes are level (detectors with landmarks)

    def check(self, problems: list[str]) -> None:
        super().check(problems)
        if isinstance(self.image_size, int) and not 8 <= self.image_size <= 512:
            problems.append(f"data.image_size: expected 8 to 512 pixels, got {self.image_size}")
        if isinstance(self.min_face, int) and self.min_face < 8:
            problems.append(f"data.min_face: the smallest face side in pixels, at least 8, got {self.min_face}")
        if self.detector not in list_detectors():
            problems.append(f"data.detector: unknown face detector {self.detector!r}; "
                            f"choose one of {', '.join(list_detectors())}")
        elif self.align_faces and not detector_class(self.detector).landmarks:
            problems.append(f"data.align_faces: the {self.detector} detector gives no eye positions; "
                            "use data.detector: mtcnn or set data.align_faces: false")


def fer2013_second_opinion(cfg: DataConfig, ids) -> dict | None:
    """FER+'s majority label (10 annotators, the FER+ protocol) for FER2013 rows ``row-<i>``, in FER2013's
    classes; images without a majority and FER+'s contempt get -1 and are counted. None without
    ``fer2013new.csv``."""
    try:
        path = find_file(cfg.path, "fer2013", ("fer2013new.csv",))
    except DataError:
        return None
    votes, _ = read_ferplus_votes(path, None)
    keep, majority, _ = ferplus_targets(votes)
    rows = np.array([int(str(i).removeprefix("row-")) for i in ids])
    mapped = np.array([FER2013_LABELS.index(FERPLUS_TO_FER2013[n]) if n in FERPLUS_TO_FER2013 else -1
                       for n in FERPLUS_LABELS] + [-1, -1])  # + unknown, not-a-face
    labels = np.where(keep[rows], mapped[majority[rows]], -1)
    contempt = keep[rows] & (majority[rows] == FERPLUS_LABELS.index("contempt"))
    return {"source": f"FER+ majority of 10 annotators ({path.name})", "labels": labels,
            "excluded": {"no FER+ majority": int((~keep[rows]).sum()),
                         "FER+ contempt (no FER2013 class)": int(contempt.sum())}}


FER2013 = DatasetSpec(
    "fer2013", modality="image", labels=FER2013_LABELS, published_test_split="PrivateTest", hub_id="fer2013",
    citation="Goodfellow et al. (2013). Challenges in Representation Learning: A report on three machine "
             "learning contests. arXiv:1307.0414.",
    published=(
        PublishedScore("human", "accuracy", 0.65, "PrivateTest", "Goodfellow et al. 2013"),
        PublishedScore("2013 challenge winner", "accuracy", 0.712, "PrivateTest", "Tang 2013"),
        PublishedScore("VGG variant", "accuracy", 0.7328, "PrivateTest", "Khaireddin & Chen 2021"),
    ),
    second_opinion=fer2013_second_opinion,
)


@register_dataset(FER2013, config=Fer2013Config)
def load_fer2013(cfg: Fer2013Config, seed: int) -> Dataset:
    """FER2013: Training -> train, PublicTest -> validation, PrivateTest -> test (the paper's protocol)."""
    path = find_file(cfg.path, "fer2013", ("fer2013.csv",))
    images, labels, usage, info = read_fer_csv(path, skip_bad_rows=cfg.skip_bad_rows)
    splits = _splits(images, labels, usage, labels >= 0)
    return Dataset(FER2013.name, LabelSet(FER2013.labels), splits, FER2013.modality, checksums(path.parent, [path.name]),
                   {**info, "checksums_verified": False})


def ferplus_targets(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FER+ majority protocol (Barsoum et al. 2016, microsoft/FERPlus ``_process_data``).

    ``votes`` is ``(N, 10)``: 8 emotions, unknown, not-a-face. Single votes are dropped as outliers; an
    image keeps its majority label only when that label holds more than half of the remaining votes and
    is an emotion (not unknown / not a face). Returns (keep mask, majority label, vote shares over the
    8 emotions)."""
    v = votes.astype(np.float64)
    v[v <= 1] = 0.0  # outlier removal: an emotion seen by a single annotator
    total = v.sum(axis=1)
    top = v.argmax(axis=1)
    keep = (total > 0) & (v.max(axis=1) > 0.5 * total) & (top < len(FERPLUS_LABELS))
    emo = v[:, : len(FERPLUS_LABELS)]
    shares = emo / np.maximum(emo.sum(axis=1, keepdims=True), 1e-12)
    return keep, top, shares


def read_ferplus_votes(path: Path, n_rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    votes, usage = [], []
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header[2:12] != list(FERPLUS_COLUMNS):
            raise DataError(f"{path}:1: expected FER+ columns Usage,Image name,{','.join(FERPLUS_COLUMNS)}",
                            hint="use fer2013new.csv from github.com/microsoft/FERPlus unchanged")
        for line, row in enumerate(reader, start=2):
            try:
                votes.append([int(x) for x in row[2:12]])
            except (ValueError, IndexError):
                raise DataError(f"{path}:{line}: expected 10 integer vote counts, got {row[2:12]}",
                                hint="use fer2013new.csv unchanged") from None
            usage.append(row[0])
    if n_rows is not None and len(votes) != n_rows:
        raise DataError(f"{path} has {len(votes)} rows but fer2013.csv has {n_rows}",
                        hint="FER+ rows align with fer2013.csv row by row: use the matching pair of files")
    return np.array(votes, np.int64), np.array(usage)


FERPLUS = DatasetSpec(  # FER+ labels are themselves the second opinion on FER2013: a FER+ run has none
    "ferplus", modality="image", labels=FERPLUS_LABELS, published_test_split="FER+ test (PrivateTest rows)",
    hub_id="ferplus",
    citation="Barsoum et al. (2016). Training Deep Networks for Facial Expression Recognition with Crowd-Sourced "
             "Label Distribution. ICMI; images from Goodfellow et al. (2013), arXiv:1307.0414.",
    published=(PublishedScore("VGG13, majority-vote labels", "accuracy", 0.84, "FER+ test (PrivateTest rows)",
                              "Barsoum et al. 2016 (0.84-0.85)"),),
)


@register_dataset(FERPLUS, config=FerPlusConfig)
def load_ferplus(cfg: FerPlusConfig, seed: int) -> Dataset:
    """FER+ labels on the FER2013 images (same rows, same splits). ``label_mode: majority`` keeps the
    images with a valid majority (8 classes); ``votes`` also trains on the vote shares (``soft_labels``)
    while scoring against the majority label."""
    pixels_path = find_file(cfg.path, "fer2013", ("fer2013.csv",))
    votes_path = find_file(str(pixels_path.parent), "fer2013", ("fer2013new.csv",))
    images, _, usage, info = read_fer_csv(pixels_path, skip_bad_rows=cfg.skip_bad_rows)
    votes, plus_usage = read_ferplus_votes(votes_path, len(usage))
    ok_rows = usage != ""
    if (plus_usage[ok_rows] != usage[ok_rows]).any():
        first = int(np.flatnonzero(plus_usage[ok_rows] != usage[ok_rows])[0])
        raise DataError(f"{votes_path}:{first + 2}: Usage differs from fer2013.csv",
                        hint="the two files must be the matching pair, in the same row order")
    keep, majority, shares = ferplus_targets(votes)
    soft = shares if cfg.label_mode == "votes" else None
    splits = _splits(images, majority, usage, keep & ok_rows, soft)
    dropped = {s: int(((usage == u) & ok_rows & ~keep).sum()) for u, s in USAGE_TO_SPLIT.items()}
    sums = checksums(pixels_path.parent, [pixels_path.name]) | checksums(votes_path.parent, [votes_path.name])
    return Dataset(FERPLUS.name, LabelSet(FERPLUS.labels), splits, FERPLUS.modality, sums,
                   {**info, "label_mode": cfg.label_mode, "dropped_no_majority": dropped})


# --- image folders ---------------------------------------------------------------------------------


def read_image(path: Path, size: int) -> np.ndarray:
    """A grayscale ``size`` square; only a regular file of at most ``MAX_PIXELS`` pixels is decoded
    (:func:`emolab.faces.photos.open_image`)."""
    from PIL import Image

    from emolab.faces.photos import open_image

    with open_image(path) as (im, _):
        im = im.convert("L")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def read_face_crop(path: Path, size: int, detector, min_face: int, align: bool = False) -> np.ndarray | None:
    """The largest face of a photo, cropped the way FER2013 frames faces (``emolab predict``'s crop), or None
    when the detector finds none; a photo already cropped like a FER face is taken whole."""
    from emolab.faces.photos import face_crops, read_photo

    crops = face_crops(read_photo(path)[0], size, detector, min_face, align)
    return crops[0][1] if crops else None


def read_image_folder(folder: Path, labels: LabelSet, size: int, split: str, *, detector=None, min_face: int = DEFAULT_MIN_FACE,
                      align: bool = False, missed: dict | None = None) -> Split:
    """``folder/<class>/*`` as grayscale ``size`` squares; with a face ``detector``, each photo's largest face
    (photos without a face are left out and listed in ``missed``)."""
    missed = {} if missed is None else missed
    images, ys, ids = [], [], []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if class_dir.name not in labels.names:
            raise DataError(f"{class_dir}: unknown class folder {class_dir.name!r}",
                            hint="class folders must match the train folder's classes (or data.labels): "
                                 + ", ".join(labels.names))
        for f in image_files(class_dir):
            image = read_image(f, size) if detector is None else read_face_crop(f, size, detector, min_face, align)
            if image is None:
                missed.setdefault(split, []).append(str(f))
                continue
            images.append(image)
            ys.append(labels.index(class_dir.name))
            ids.append(f"{split}/{class_dir.name}/{f.name}")
    if not images:
        why = " in which the face detector found a face" if detector is not None else ""
        raise DataError(f"{folder}: no images{why} found",
                        hint=f"expected {folder}/<class>/*.png or *.jpg" +
                             ("; lower data.min_face or set data.detect_faces: false" if detector else ""))
    return Split(np.array(ids), np.stack(images), np.array(ys, np.int64))


IMAGEFOLDER = DatasetSpec("imagefolder", modality="image")  # labels: the train folder's class folders


@register_dataset(IMAGEFOLDER, config=ImageFolderConfig)
def load_image_folder(cfg: ImageFolderConfig, seed: int) -> Dataset:
    """``data.path`` holds ``train/<class>/*`` and ``test/<class>/*`` (and optionally ``validation/`` or
    ``val/``; else a seeded stratified ``data.validation_ratio`` of train). Images become grayscale
    ``image_size`` squares."""
    from sklearn.model_selection import train_test_split

    if not cfg.path:
        raise DataError("data.path is not set", hint="give data.path: a folder holding train/<class>/ and test/<class>/")
    root = Path(cfg.path).expanduser()
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder", hint="expected train/<class>/*.png and test/<class>/*.png")
    names = tuple(cfg.labels) if cfg.labels else tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
    labels = LabelSet(names)
    missed: dict[str, list[str]] = {}
    detector = None
    if cfg.detect_faces:
        from emolab.faces.detectors import create_detector

        detector = create_detector(cfg.detector)
    read = lambda folder, split: read_image_folder(folder, labels, cfg.image_size, split,  # noqa: E731
                                                   detector=detector, min_face=cfg.min_face,
                                                   align=cfg.align_faces, missed=missed)
    train = read(root / "train", "train")
    splits = {}
    val_dir = next((root / d for d in ("validation", "val", "valid") if (root / d).is_dir()), None)
    if val_dir is not None:
        splits = {"train": train, "validation": read(val_dir, "validation")}
    else:
        tr, va = train_test_split(np.arange(len(train)), test_size=cfg.validation_ratio, random_state=seed,
                                  stratify=train.labels)
        splits = {"train": train.subset(np.sort(tr)), "validation": train.subset(np.sort(va))}
    test_dir = next((root / d for d in ("test", "PrivateTest") if (root / d).is_dir()), None)
    if test_dir is None:
        raise DataError(f"{root} has no test/ folder", hint="expected test/<class>/*.png")
    splits["test"] = read(test_dir, "test")
    info = {"root": str(root)}
    if cfg.detect_faces:  # photos without a face: left out, counted and named
        info["no_face"] = {split: len(files) for split, files in missed.items()}
        info["no_face_files"] = {split: files[:20] for split, files in missed.items()}
    return Dataset(root.name, labels, splits, IMAGEFOLDER.modality, {}, info)
