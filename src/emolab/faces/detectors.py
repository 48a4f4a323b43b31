"""Face detectors by name, whose weights install offline with a package (no download at run time).

``mtcnn`` (the default): MTCNN's three-stage cascade with five landmarks, weights from the facenet-pytorch
wheel (:mod:`emolab.faces.mtcnn`). ``haar``: OpenCV's frontal-face Haar cascade, shipped in the
``opencv-python-headless`` 4.x wheel (``cv2/data``; OpenCV 5 wheels dropped the cascades, so the dependency
is pinned below 5), the fallback that needs nothing beyond OpenCV (on the synthetic scenes it finds fewer
faces, and is slower when looking for faces down to 24 pixels). Candidates measured side by side on the same
synthetic scenes: ``benchmarks/faces_in_the_wild.py``. A detector
returns :class:`Face` boxes in pixels of the image it was given (``xmin, ymin, xmax, ymax``, the Hugging
Face detection convention) and declares the ``margin`` that turns its box into FER2013's framing
(measured: ``benchmarks/face_framing.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from emolab.errors import EmolabError, unknown_name

DEFAULT_MIN_FACE = 24  # pixels: the smallest face side looked for, unless --min-face says otherwise


def to_gray(image: np.ndarray) -> np.ndarray:
    """A grayscale copy of an RGB image (ITU-R 601 luma, as PIL's ``L``); a grayscale image as it is."""
    import cv2

    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


@dataclass(frozen=True)
class Face:
    xmin: int
    ymin: int
    xmax: int
    ymax: int
    score: float
    landmarks: tuple | None = None  # ((x, y) of the left eye, right eye, nose, mouth left, mouth right) or None

    @property
    def side(self) -> int:
        return max(self.xmax - self.xmin, self.ymax - self.ymin)

    def to_dict(self) -> dict:
        return {"xmin": self.xmin, "ymin": self.ymin, "xmax": self.xmax, "ymax": self.ymax, "score": self.score}

    def eye_angle(self) -> float:
        """Degrees the face is turned (the right eye below the left: positive); 0 without landmarks, and 0
        past 45 degrees either way (eyes that far from level are a landmark error or a profile, and turning
        the crop would stand the face on its side or head)."""
        if self.landmarks is None:
            return 0.0
        (lx, ly), (rx, ry) = self.landmarks[:2]
        angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
        return angle if abs(angle) <= 45 else 0.0

    def scaled(self, factor: float) -> Face:
        """The same face in an image ``factor`` times as large."""
        marks = None if self.landmarks is None else tuple((x * factor, y * factor) for x, y in self.landmarks)
        return Face(round(self.xmin * factor), round(self.ymin * factor), round(self.xmax * factor),
                    round(self.ymax * factor), self.score, marks)


class Detector:
    """``detect(image, min_face)`` -> faces, largest first, in an RGB (HxWx3) or grayscale (HxW) uint8 image.
    ``margin``: how much to enlarge the box (as a share of its side) so the crop frames a face as FER2013
    does. ``landmarks``: whether its faces carry eye positions (for aligned crops)."""

    name: str = ""
    margin: float = 0.0
    landmarks: bool = False
    work_side: int = 480  # larger images are searched on a copy this large (speed) ...
    window: int = 12  # ... unless that would shrink a min_face face below the detector's smallest window

    def detect(self, image: np.ndarray, min_face: int = DEFAULT_MIN_FACE) -> list[Face]:
        raise NotImplementedError

    def working_copy(self, image: np.ndarray, min_face: int) -> tuple[np.ndarray, float]:
        """``(copy, scale)``: the image shrunk to ``work_side`` pixels a side, never so far that a ``min_face``
        face falls below the detector's smallest window, and never enlarged."""
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, max(self.work_side / max(h, w), self.window / max(min_face, 1)))
        if scale == 1.0:
            return image, scale
        return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), scale


_DETECTORS: dict[str, Callable[[], Detector]] = {}
DEFAULT_DETECTOR = "mtcnn"  # recall 0.86 vs the Haar cascade's 0.77 on synthetic scenes: results/faces-in-the-wild.md


def register_detector(name: str):
    def wrap(cls):
        if name in _DETECTORS:
            raise ValueError(f"a face detector named {name!r} is already registered")
        cls.name = name
        _DETECTORS[name] = cls
        return cls

    return wrap


def largest_first(faces: list[Face], min_face: int, shape: tuple) -> list[Face]:
    """The faces at least ``min_face`` pixels a side, largest first, boxes clipped to an image of ``shape``
    (a face cut by the frame's edge gets the box of its visible part): what every detector returns."""
    h, w = shape[:2]
    clipped = [replace(f, xmin=max(0, f.xmin), ymin=max(0, f.ymin), xmax=min(w, f.xmax), ymax=min(h, f.ymax))
               for f in faces if f.side >= min_face]
    return sorted((f for f in clipped if f.xmax > f.xmin and f.ymax > f.ymin), key=lambda f: -f.side)


def list_detectors() -> list[str]:
    return sorted(_DETECTORS)


def detector_class(name: str) -> type[Detector]:
    if name not in _DETECTORS:
        raise unknown_name("face detector", name, list(_DETECTORS))
    return _DETECTORS[name]


def create_detector(name: str = DEFAULT_DETECTOR) -> Detector:
    return detector_class(name)()


def alignment_note(name: str, align: bool) -> str | None:
    """What to tell a user who asks for aligned crops from a detector without eye positions (else None)."""
    if align and not detector_class(name).landmarks:
        return f"--align: the {name} detector gives no eye positions, so crops are not turned"
    return None


@register_detector("haar")
class HaarDetector(Detector):
    """OpenCV's ``haarcascade_frontalface_alt2``, searched on a :meth:`~Detector.working_copy` (speed) with the
    boxes mapped back. Its score is the cascade's final-stage weight."""

    margin = 0.03  # FER2013 frame side / box side, median 1.027 on 1,000 PrivateTest faces: results/face-framing.md
    # chosen on synthetic FER scenes (seed 1, 150 scenes; reported on seed 0): of the default, alt and alt2
    # cascades, scale steps 1.03-1.1, 1-6 neighbours and 280-640 px working sides, alt2 / 1.05 / 2 / 320 had the
    # best recall (0.829, precision 0.891) but also boxed the astronaut's shoulder patch; with 4 neighbours:
    # recall 0.785, precision 0.923, 28 scenes/s, one face in each packaged photo (OpenCV's defaults,
    # frontalface_default / 1.1 / 5 / 640: 0.691, 0.896, 28 scenes/s). Those scenes look for 48-pixel faces;
    # looking for 24-pixel ones the working copy is larger (13 frames/s with the CPU preset)
    work_side = 320
    window = 20  # the cascade's 20x20 window

    def __init__(self, scale_factor: float = 1.05, min_neighbors: int = 4, cascade: str = "frontalface_alt2",
                 work_side: int | None = None):
        try:
            import cv2
        except ImportError:  # pragma: no cover - a declared dependency
            raise EmolabError("face detection needs OpenCV", hint="pip install 'opencv-python-headless<5'") from None
        path = cv2.data.haarcascades + f"haarcascade_{cascade}.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise EmolabError(f"OpenCV's face cascade is missing ({path})",
                              hint="install opencv-python-headless 4.x (OpenCV 5 wheels ship no cascades)")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.work_side = work_side or self.work_side

    def detect(self, image: np.ndarray, min_face: int = DEFAULT_MIN_FACE) -> list[Face]:
        small, scale = self.working_copy(to_gray(image), min_face)
        side = max(8, int(min_face * scale))
        boxes, _levels, weights = self.cascade.detectMultiScale3(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side),
            outputRejectLevels=True)
        faces = [Face(int(x / scale), int(y / scale), int((x + bw) / scale), int((y + bh) / scale), float(s))
                 for (x, y, bw, bh), s in zip(boxes, np.ravel(weights))]
        return largest_first(faces, min_face, image.shape)


@register_detector("mtcnn")
class MtcnnDetector(Detector):
    """MTCNN's three-stage cascade (:mod:`emolab.faces.mtcnn`, weights from facenet-pytorch's wheel), with five
    landmarks per face, so crops can be aligned on the eyes. Searched on a :meth:`~Detector.working_copy`;
    grayscale images are given to it as three equal channels. Its score is ONet's face probability."""

    landmarks = True
    margin = -0.054  # FER2013 frame side / box side, median 0.946 on 1,000 PrivateTest faces: results/face-framing.md
    window = 12  # PNet's 12x12 window

    def __init__(self, thresholds=(0.6, 0.7, 0.7), work_side: int | None = None):
        from emolab.faces.mtcnn import MTCNN

        self.net = MTCNN(thresholds)
        self.work_side = work_side or self.work_side

    def detect(self, image: np.ndarray, min_face: int = DEFAULT_MIN_FACE) -> list[Face]:
        small, scale = self.working_copy(image, min_face)
        rgb = np.repeat(small[..., None], 3, 2) if small.ndim == 2 else small
        boxes, marks = self.net.detect(rgb, max(12, int(min_face * scale)))
        faces = [Face(round(float(x0)), round(float(y0)), round(float(x1)), round(float(y1)), float(s),
                      tuple((float(x), float(y)) for x, y in m)).scaled(1 / scale)
                 for (x0, y0, x1, y1, s), m in zip(boxes, marks)]
        return largest_first(faces, min_face, image.shape)
