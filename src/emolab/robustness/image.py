"""Image corruptions of face crops: pure functions ``f(images, rng, severity) -> images`` on uint8 arrays
``(N, H, W)`` (or ``(N, H, W, C)``), at five severities as in ImageNet-C (Hendrycks & Dietterich 2019).

The levels are ImageNet-C's where they carry over to a 48x48 face (noise, JPEG quality, brightness,
contrast) and scaled down to its size where they do not (blur, resolution). The occluding patches cover the
eyes (rows 14-22 of a FER-aligned 48x48 crop) or the mouth (rows 32-40), widening with severity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from emolab.errors import unknown_name

NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)  # of the 0..1 range (ImageNet-C gaussian_noise)
BLUR_SIGMA = (0.5, 0.75, 1.0, 1.5, 2.0)  # pixels of a 48x48 face
JPEG_QUALITY = (25, 18, 15, 10, 7)  # ImageNet-C jpeg_compression
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to the 0..1 range (ImageNet-C brightness)
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)  # kept share of the deviation from the mean (ImageNet-C contrast)
RESOLUTION = (0.75, 0.5, 0.4, 0.3, 0.25)  # down-sampling factor before up-sampling back
ROTATION = (5, 10, 15, 20, 30)  # degrees, sign at random
PATCH_WIDTH = (0.2, 0.4, 0.6, 0.8, 1.0)  # share of the width an occluding patch covers
EYES, MOUTH = (14, 22), (32, 40)  # rows of a 48x48 FER crop


def _each(images: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([f(im) for im in images]) if len(images) else images.copy()


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_noise(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Additive Gaussian noise."""
    return _clip(images + rng.normal(0, NOISE_SIGMA[severity - 1] * 255, images.shape))


def gaussian_blur(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Gaussian blur."""
    import cv2

    s = BLUR_SIGMA[severity - 1] * images.shape[1] / 48
    return _each(images, lambda im: cv2.GaussianBlur(im, (0, 0), s).reshape(im.shape))


def jpeg(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """JPEG compression at a low quality."""
    import cv2

    q = [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY[severity - 1]]
    return _each(images, lambda im: cv2.imdecode(cv2.imencode(".jpg", im, q)[1], cv2.IMREAD_UNCHANGED).reshape(im.shape))


def brightness(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Brighter: a constant added to every pixel."""
    return _clip(images.astype(np.float32) + BRIGHTNESS[severity - 1] * 255)


def contrast(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Lower contrast: every pixel pulled towards its image's mean."""
    x = images.astype(np.float32)
    mean = x.reshape(len(x), -1).mean(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    return _clip((x - mean) * CONTRAST[severity - 1] + mean)


def low_resolution(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Low resolution: down-sampled, then up-sampled back to the original size."""
    import cv2

    h, w = images.shape[1:3]
    f = RESOLUTION[severity - 1]
    small = (max(1, round(w * f)), max(1, round(h * f)))
    return _each(images, lambda im: cv2.resize(cv2.resize(im, small, interpolation=cv2.INTER_AREA), (w, h),
                                               interpolation=cv2.INTER_LINEAR).reshape(im.shape))


def rotation(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """A small rotation about the centre, clockwise or not at random (borders replicated)."""
    import cv2

    h, w = images.shape[1:3]
    signs = rng.choice([-1.0, 1.0], size=len(images))
    return np.stack([cv2.warpAffine(im, cv2.getRotationMatrix2D((w / 2, h / 2), s * ROTATION[severity - 1], 1.0),
                                    (w, h), borderMode=cv2.BORDER_REPLICATE).reshape(im.shape)
                     for im, s in zip(images, signs)]) if len(images) else images.copy()


def _patch(images: np.ndarray, rows: tuple[int, int], severity: int) -> np.ndarray:
    out = images.copy()
    h, w = images.shape[1:3]
    top, bottom = round(rows[0] * h / 48), round(rows[1] * h / 48)
    half = round(w * PATCH_WIDTH[severity - 1] / 2)
    out[:, top:bottom, w // 2 - half: w // 2 + half] = 0
    return out


def occlude_eyes(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """A black patch over the eyes (rows 14-22 of 48), wider with severity."""
    return _patch(images, EYES, severity)


def occlude_mouth(images: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """A black patch over the mouth (rows 32-40 of 48), wider with severity."""
    return _patch(images, MOUTH, severity)


@dataclass(frozen=True)
class Corruption:
    name: str
    fn: Callable[[np.ndarray, np.random.Generator, int], np.ndarray]
    kind: str = "corruption"
    graded: bool = True

    @property
    def description(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption("gaussian-noise", gaussian_noise),
    Corruption("blur", gaussian_blur),
    Corruption("jpeg", jpeg),
    Corruption("brightness", brightness),
    Corruption("contrast", contrast),
    Corruption("low-resolution", low_resolution),
    Corruption("rotation", rotation),
    Corruption("occlude-eyes", occlude_eyes),
    Corruption("occlude-mouth", occlude_mouth),
]}


def corrupt(name: str, images: np.ndarray, *, severity: int = 3, seed: int = 0) -> np.ndarray:
    """``images`` (uint8) under the named corruption; the same name, severity and seed give the same output."""
    if name not in CORRUPTIONS:
        raise unknown_name("image corruption", name, list(CORRUPTIONS))
    images = np.asarray(images)
    rng = np.random.default_rng([seed, severity, sum(map(ord, name))])
    return CORRUPTIONS[name].fn(images, rng, severity)
