"""Photos through face detection: every face a detector finds is cropped the way FER2013 frames faces (a
square around the box, enlarged by the detector's measured margin), made grayscale at the model's side and
classified; one row per face, and a row that says so for a photo without a face (never a prediction on the
whole frame). Images already cropped like FER faces (small and square) skip detection. Detectors see the
photo in colour; with ``align`` and a detector that gives landmarks, each crop is turned so the eyes are level.

Photos are read with their EXIF orientation applied, and large ones are decoded at reduced size (JPEG
draft mode) and capped at ``MAX_SIDE`` pixels, so a 50-megapixel photo does not fill the memory. Only regular
files are opened (a FIFO named ``x.png`` would block the read forever), and an image that would still decode to
more than ``MAX_PIXELS`` pixels (a 12,000 x 12,000 PNG compresses to 140 KB and decodes to 144 MB a channel) is
refused from its header, before it is decoded.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emolab.errors import DataError
from emolab.faces.detectors import DEFAULT_MIN_FACE, Detector, Face, to_gray

MAX_SIDE = 2048  # photos are read at most this large (faces of 24+ pixels stay findable in 12 MP photos)
MAX_PIXELS = 25_000_000  # most pixels decoded from one image (the server's default max_image_pixels)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def is_regular_file(path: Path) -> bool:
    """A regular file (through symlinks): not a FIFO, socket, device or folder, whose read could block."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def image_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The image files in ``folder`` (and below it, with ``recursive``), sorted: regular files with an image
    suffix only, so a FIFO or device named ``x.png`` is never opened (its read would block)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and is_regular_file(p))


def open_regular(path) -> object:
    """``path`` opened for binary reading, refused unless it is a regular file. The check is made on the
    opened descriptor (opened without blocking), so a file swapped for a FIFO after listing cannot hang."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", hint="check the path") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be opened ({exc.strerror})",
                        hint="check the path and its permissions") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
        kind = next((name for test, name in kinds if test(mode)), "a special file")
        raise DataError(f"{path}: {kind}, not a regular file; only image files are read",
                        hint="give image files (or folders of them)")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


# what PIL raises on a truncated or corrupt file, while opening it or decoding it
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


@contextmanager
def open_image(path, *, max_pixels: int = MAX_PIXELS, draft: tuple[str, int] | None = None):
    """``(PIL image, (width, height) before draft)`` of a file path or file-like object, its header read, its
    pixels not yet decoded; refused with a :class:`DataError` naming the file when it is no regular file, is no
    image, or holds more than ``max_pixels`` pixels (counted after ``draft = (mode, side)``: JPEGs decode at 1/2
    to 1/8 size when that still leaves ``side`` pixels a side). Decoding errors inside the ``with`` block (a
    truncated or corrupt file) become the same error."""
    from PIL import Image, UnidentifiedImageError

    fh = open_regular(path) if isinstance(path, (str, os.PathLike)) else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the file named
            try:
                im = Image.open(fh)
            except Image.DecompressionBombError as exc:
                raise DataError(f"{path}: too many pixels ({exc})", hint=f"images of at most {max_pixels:,} "
                                "pixels are read; shrink it first") from None
            except UnidentifiedImageError:  # its message names the open file handle, not the file
                raise DataError(f"{path}: not a readable image (no image format recognised)",
                                hint="remove or replace the file") from None
            except _UNREADABLE as exc:
                raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})",
                                hint="remove or replace the file") from None
        with im:
            full = im.size
            if draft is not None:
                mode, side = draft
                box = (side, side)
                if im.width * im.height > max_pixels:  # reduce as far as the long side allows, rather than refuse
                    k = side / max(full)
                    box = (max(1, math.ceil(full[0] * k)), max(1, math.ceil(full[1] * k)))
                im.draft(mode, box)
            if im.width * im.height > max_pixels:
                raise DataError(f"{path}: {full[0]} x {full[1]} pixels, over the {max_pixels:,} emolab decodes "
                                "(a decompression bomb?)", hint="shrink the image first (or crop the face)")
            try:
                yield im, full
            except (UnidentifiedImageError, *_UNREADABLE) as exc:
                raise DataError(f"{path}: not a readable image, truncated or corrupt ({type(exc).__name__}: {exc})",
                                hint="remove or replace the file") from None
    finally:
        if fh is not path:
            fh.close()


@dataclass
class FaceRow:
    """One face of one photo (``face`` None and no box: the photo has no face found)."""

    file: str
    face: int | None
    box: Face | None
    label: str = ""
    probs: np.ndarray | None = None
    detected: bool = True  # False: the image was taken as an already cropped face
    scale: float = 1.0  # photo pixels per pixel of the image the box was found in
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)  # what the model reads (grayscale)

    def photo_box(self) -> dict | None:
        """The box in the original photo's pixels (EXIF-rotated)."""
        if self.box is None:
            return None
        b = self.box
        return {"xmin": round(b.xmin * self.scale), "ymin": round(b.ymin * self.scale),
                "xmax": round(b.xmax * self.scale), "ymax": round(b.ymax * self.scale), "score": b.score}


def read_photo(path, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """``(RGB uint8 array HxWx3, scale)`` of a file path or file-like object: EXIF orientation applied, at
    most ``max_side`` pixels a side; ``scale`` maps its pixels back to the photo's."""
    from PIL import Image, ImageOps

    # JPEG: decoded at 1/2, 1/4 or 1/8 size when that is enough
    with open_image(path, draft=("RGB", max_side)) as (im, full_size):
        im = ImageOps.exif_transpose(im).convert("RGB")
        if max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).copy(), max(full_size) / max(im.size)


def looks_cropped(gray: np.ndarray, side: int) -> bool:
    """Small and square: a face already cut out like FER2013's (48x48 up to twice the model's side)."""
    h, w = gray.shape[:2]
    return max(h, w) <= 2 * side and abs(h - w) <= 0.1 * max(h, w)


def fer_crop(gray: np.ndarray, face: Face, margin: float, side: int, *, align: bool = False) -> np.ndarray:
    """The square around ``face`` enlarged by ``margin`` (edges replicated past the photo), at ``side``; with
    ``align`` and landmarks, turned about the box's centre so that the eyes are level."""
    import cv2

    angle = face.eye_angle() if align else 0.0
    if abs(angle) >= 0.5:
        outer = int(np.ceil(side * 1.5))  # room for the corners, cut away after turning
        wide = Face(face.xmin, face.ymin, face.xmax, face.ymax, face.score)
        big = fer_crop(gray, wide, (1 + margin) * outer / side - 1, outer)
        turn = cv2.getRotationMatrix2D((outer / 2, outer / 2), angle, 1.0)
        big = cv2.warpAffine(big, turn, (outer, outer), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        start = (outer - side) // 2
        return big[start:start + side, start:start + side]
    cx, cy = (face.xmin + face.xmax) / 2, (face.ymin + face.ymax) / 2
    half = face.side * (1 + margin) / 2
    x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    h, w = gray.shape
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return cv2.resize(gray[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA)


def face_crops(image: np.ndarray, side: int, detector: Detector | None, min_face: int = DEFAULT_MIN_FACE,
               align: bool = False) -> list[tuple[Face | None, np.ndarray]]:
    """``(box, grayscale crop)`` for each face in a photo (RGB or grayscale), largest first; ``[(None, whole
    image)]`` for an image already cropped like a FER face or when there is no detector; ``[]`` when no face is
    found. The one place that decides what of a photo a face model sees (``emolab predict``, ``emolab
    evaluate --photos``, image folders with ``detect_faces`` and ``emolab serve`` all call it)."""
    gray = to_gray(image)
    if detector is None or looks_cropped(gray, side):
        whole = gray if gray.shape == (side, side) else \
            fer_crop(gray, Face(0, 0, gray.shape[1], gray.shape[0], 1.0), 0.0, side)
        return [(None, whole)]
    return [(f, fer_crop(gray, f, detector.margin, side, align=align)) for f in detector.detect(image, min_face)]


NO_FACE = "(no face found)"  # the label of a photo's row when no face is found in it


@dataclass
class PhotoPredictor:
    """A face model and a detector: ``faces(file, rgb, scale)`` -> one photo's :class:`FaceRow`s, the one
    "photo -> face rows" step of ``emolab predict``, ``emolab score`` and ``emolab serve``;
    ``rows(paths)`` -> the labelled rows of photo files."""

    model: object
    side: int
    detector: Detector | None = None  # None: never detect (--no-detect)
    min_face: int = DEFAULT_MIN_FACE
    align: bool = False
    photos: dict = field(default_factory=dict)  # path -> RGB image, kept for annotation

    def faces(self, file: str, rgb: np.ndarray, scale: float = 1.0) -> list[FaceRow]:
        """One row per face of a photo (as :func:`read_photo` gives it), largest first, each holding its crop
        and its box in the photo's pixels (``photo_box``), not yet labelled; one row without a face when none
        is found."""
        found = face_crops(rgb, self.side, self.detector, self.min_face, self.align)
        if not found:
            return [FaceRow(file, None, None, label=NO_FACE, scale=scale)]
        return [FaceRow(file, i, box, detected=box is not None, scale=scale, crop=crop)
                for i, (box, crop) in enumerate(found)]

    def label(self, rows: list[FaceRow], probs: np.ndarray) -> list[FaceRow]:
        """``rows`` with each face's probabilities (``probs``: one row per face, in order) and top label."""
        names = self.model.labels.names
        for row, p in zip((r for r in rows if r.face is not None), probs):
            row.probs, row.label = p, names[int(p.argmax())]
        return rows

    def rows(self, paths: list[Path], *, keep_photos: bool = False) -> list[FaceRow]:
        rows = []
        for path in paths:
            rgb, scale = read_photo(path)
            if keep_photos:
                self.photos[str(path)] = rgb
            rows += self.faces(str(path), rgb, scale)
        crops = [r.crop for r in rows if r.face is not None]
        return self.label(rows, self.model.predict_proba(np.stack(crops))) if crops else rows


def annotate(rgb: np.ndarray, rows: list[FaceRow], out: Path) -> Path:
    """The photo with each face's box and label drawn, written to ``out``."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 300))
    for row in rows:
        if row.box is None:
            continue
        b = row.box
        draw.rectangle([b.xmin, b.ymin, b.xmax, b.ymax], outline=(46, 204, 113), width=width)
        text = f"{row.label} {row.probs.max():.2f}"
        left, top, right, bottom = draw.textbbox((b.xmin, b.ymin), text)
        y = max(0, b.ymin - (bottom - top) - 2 * width)
        draw.rectangle([b.xmin, y, b.xmin + right - left + 2 * width, y + bottom - top + 2 * width], fill=(46, 204, 113))
        draw.text((b.xmin + width, y + width - (top - b.ymin)), text, fill=(0, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out


def table_csv(columns: list[str], names: tuple[str, ...], lines) -> str:
    """CSV text: ``columns`` then one probability column per label; each line is ``(values, probs or None)``."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns + [f"p_{n}" for n in names])
    for values, probs in lines:
        w.writerow(list(values) + ([f"{x:.6f}" for x in probs] if probs is not None else [""] * len(names)))
    return buf.getvalue()


def rows_csv(rows: list[FaceRow], names: tuple[str, ...]) -> str:
    """One line per face: the image, face index, box in the photo's pixels, detector score, label, probabilities."""
    def line(r: FaceRow):
        box = r.photo_box() or {}
        return ([r.file, "" if r.face is None else r.face, *(box.get(k, "") for k in ("xmin", "ymin", "xmax", "ymax")),
                 f"{box['score']:.3f}" if box else "", r.label], r.probs)

    return table_csv(["input", "face", "xmin", "ymin", "xmax", "ymax", "detector_score", "label"], names,
                     map(line, rows))
