"""The ``model`` sections of the face models and their training-batch augmentation, apart from the models
so that reading a run's config (``emolab compare``, ``emolab report``, serving an export) needs no torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from emolab.models.registry import ModelConfig

# the test-time augmentations an image model averages over (eval.tta; emolab.models.image_augment.tta_views)
TTA_MODES = ("none", "flip", "ten-crop", "dense")


@dataclass
class AugmentConfig:
    """Image augmentation (``model.augment`` of the image models), applied per training batch (on the GPU
    when there is one)."""

    hflip: bool = False  # horizontal flip with probability 0.5
    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    shift: float = 0.0  # translation as a fraction of the side (random crop of a padded image)
    scale: float = 0.0  # zoom in [1 - scale, 1 + scale]
    random_erasing: float = 0.0  # probability of erasing one random rectangle

    def check(self, problems: list[str], prefix: str = "model.augment.") -> None:
        for key in ("shift", "scale", "random_erasing"):
            value = getattr(self, key)
            if isinstance(value, float) and not 0.0 <= value < 1.0:
                problems.append(f"{prefix}{key}: must be in [0, 1), got {value}")


@dataclass
class ImageModelConfig(ModelConfig):
    """What every face model shares: dropout, the central crop it sees, and training-batch augmentation."""

    modality: ClassVar[str] = "image"

    dropout: float = 0.1  # dropout before the classifier
    # the network sees only the central crop_size x crop_size window (None: the whole image). With
    # augment.shift that is a random crop per training image; ten-crop TTA then averages the four corner
    # crops, the centre and their mirrors, and dense TTA every crop position on a 2-pixel grid and its mirror.
    # Cost per image scales with crop_size^2 (40 of 48: 0.69x).
    crop_size: Optional[int] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self, problems: list[str]) -> None:
        for key, low in (("width", 1), ("hidden_size", 0)):  # the sizes a subclass owns
            value = getattr(self, key, None)
            if isinstance(value, int) and value < low:
                problems.append(f"model.{key}: must be at least {low}, got {value}")
        if isinstance(self.dropout, float) and not 0.0 <= self.dropout < 1.0:
            problems.append(f"model.dropout: must be in [0, 1), got {self.dropout}")
        # the upper bound, the side of the dataset's images, is checked when the network is built for them
        if isinstance(self.crop_size, int) and not isinstance(self.crop_size, bool) and self.crop_size < 8:
            problems.append(f"model.crop_size: expected a whole number of pixels from 8 to the image side, got "
                            f"{self.crop_size}")
        self.augment.check(problems)

    def unregularised(self) -> ImageModelConfig:
        return dataclasses.replace(self, dropout=0.0, augment=AugmentConfig())


@dataclass
class MlpConfig(ImageModelConfig):
    hidden_size: int = 512  # hidden units


@dataclass
class ConvConfig(ImageModelConfig):
    """What the convolutional face models add to the shared keys."""

    channels_last: bool = True  # train in channels-last memory format (faster convolutions on CUDA and on CPU)


@dataclass
class CnnConfig(ConvConfig):
    width: int = 32  # channels of the first block (doubled per block)
    hidden_size: int = 512  # the classifier's hidden layer (0: none)


@dataclass
class VggConfig(CnnConfig):
    depths: Optional[list] = None  # conv-BN-ReLU layers in each of the 4 stages; None: [2, 2, 2, 2]

    def check(self, problems: list[str]) -> None:
        super().check(problems)
        d = self.depths  # None: [2, 2, 2, 2]; a value that is not a list is refused by its type
        if isinstance(d, list) and not (len(d) == 4 and
                                        all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in d)):
            problems.append(f"model.depths: expected 4 positive integers (layers per stage), got {d!r}")


@dataclass
class ResNetConfig(ConvConfig):
    width: int = 32  # channels of the stem and first stage (torchvision's ResNet-18: 64)
