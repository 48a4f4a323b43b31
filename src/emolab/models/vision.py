"""Image classifiers for 48x48 grayscale faces (FER2013, FER+): ``mlp``, ``cnn-small``, ``vgg-fer`` and
``resnet18-fer``, trained by the same loop as the text encoders.

A module takes ``pixels``: float ``(N, 1, H, W)`` in [0, 1] and normalises it with the training set's
mean and std, held as buffers so a saved or exported model needs nothing else. Augmentation runs on
whole batches (on the GPU when there is one) in :mod:`emolab.models.image_augment`; its settings are the image
models' ``model.augment`` section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
from torch import nn

from emolab.errors import ConfigError
from emolab.models.image_augment import batch_augmenter, tta_views
from emolab.models.registry import MODEL_FILE, ModelConfig, read_model_card, register_model, write_model_card
from emolab.models.vision_config import (AugmentConfig, CnnConfig, ConvConfig, ImageModelConfig,  # noqa: F401
                                        MlpConfig, ResNetConfig, VggConfig)
from emolab.models.torch_base import TorchClassifier, TrainTask, fit_shapes
from emolab.records import FACE_SIDE, LabelSet



# --- config sections ---------------------------------------------------------------------------------


# the config sections live in vision_config.py (readable without torch)


class Normalise(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.5))
        self.register_buffer("std", torch.tensor(0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def classifier_head(features: int, hidden: int, classes: int, dropout: float) -> nn.Sequential:
    if hidden <= 0:
        return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(features, classes))
    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(features, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, classes))


def mlp(cfg: MlpConfig, classes: int, side: int) -> nn.Module:
    """The first face baseline of a practitioner report: flatten -> hidden -> classes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(side * side, cfg.hidden_size), nn.ReLU(inplace=True),
                         nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden_size, classes))


def cnn_small(cfg: CnnConfig, classes: int, side: int) -> nn.Module:
    """Three conv blocks (conv-BN-ReLU, max-pool, dropout), widths w, 2w, 4w, then a small head."""
    w, layers, c_in = cfg.width, [], 1
    for c in (w, 2 * w, 4 * w):
        layers += [conv_bn(c_in, c), nn.MaxPool2d(2, ceil_mode=True), nn.Dropout(cfg.dropout / 2)]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(3), classifier_head(c_in * 9, cfg.hidden_size, classes, cfg.dropout))


def vgg_fer(cfg: VggConfig, classes: int, side: int) -> nn.Module:
    """VGG-style: four stages of 3x3 conv-BN-ReLU layers (w, 2w, 4w, 8w channels; ``depths`` layers each, two
    by default) with max-pooling, then a fully connected head; the family behind the best single-network
    FER2013 results."""
    depths = [2, 2, 2, 2] if cfg.depths is None else cfg.depths  # checked by VggConfig
    w, layers, c_in = cfg.width, [], 1
    for c, depth in zip((w, 2 * w, 4 * w, 8 * w), depths):
        # ceil_mode: odd sides (a 40 or 44 crop reaches 5x5 or 11x11) keep their last row and column
        layers += [conv_bn(c_in, c)] + [conv_bn(c, c) for _ in range(depth - 1)] + [nn.MaxPool2d(2, ceil_mode=True)]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(3), classifier_head(c_in * 9, cfg.hidden_size, classes, cfg.dropout))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c_in, c_out, stride), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(c_out))
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.skip(x))


def resnet18_fer(cfg: ResNetConfig, classes: int, side: int) -> nn.Module:
    """ResNet-18 (2-2-2-2 basic blocks) adapted to one channel and 48x48: a 3x3 stride-1 stem and no
    stem max-pool, so the last stage still sees 6x6. Widths w, 2w, 4w, 8w (torchvision's: w = 64)."""
    w = cfg.width
    layers: list[nn.Module] = [conv_bn(1, w)]
    c_in = w
    for i, c in enumerate((w, 2 * w, 4 * w, 8 * w)):
        layers += [BasicBlock(c_in, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), classifier_head(c_in, 0, classes, cfg.dropout))


Architecture = Callable[[ImageModelConfig, int, int], nn.Module]


class ImageClassifierModule(nn.Module):
    """Crop -> normalise -> ``architecture(cfg, classes, side)``."""

    def __init__(self, architecture: Architecture, cfg: ImageModelConfig, classes: int, side: int = FACE_SIDE):
        super().__init__()
        self.crop = cfg.crop_size  # checked by ImageModelConfig, and against the side by ImageClassifier.build
        self.normalise = Normalise()
        self.net = architecture(cfg, classes, self.crop or side)
        self.channels_last = False

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.crop is not None:  # the central window; training batches arrive shifted, so it is a random crop
            h, w = (int(d) for d in pixels.shape[-2:])  # plain ints: an ONNX export keeps the crop's shape static
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            pixels = pixels[..., top:top + self.crop, left:left + self.crop]
        x = self.normalise(pixels)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)


# --- data for the training loop ----------------------------------------------------------------------


class ImageSet(torch.utils.data.Dataset):
    """uint8 images ``(N, H, W)`` with labels (and optional target distributions)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, targets: np.ndarray | None = None):
        self.images, self.labels, self.targets = images, labels, targets

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {"pixels": self.images[i], "labels": self.labels[i], "index": i}
        if self.targets is not None:
            item["targets"] = self.targets[i]
        return item


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` -> float ``(N, 1, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float().div_(255.0)


def collate_images(items: list[dict]) -> dict[str, torch.Tensor]:
    out = {"pixels": to_pixels(np.stack([it["pixels"] for it in items])),
           "labels": torch.as_tensor(np.array([it["labels"] for it in items]), dtype=torch.long),
           "index": torch.tensor([it["index"] for it in items])}
    if "targets" in items[0]:
        out["targets"] = torch.as_tensor(np.stack([it["targets"] for it in items]), dtype=torch.float32)
    return out


# --- the classifier ----------------------------------------------------------------------------------


class ImageClassifier(TorchClassifier):
    """What every face model shares; each architecture is one registered subclass below."""

    config_class: ClassVar[type[ModelConfig]] = ImageModelConfig
    modality = "image"
    family = "cnn"
    supports_resume = True

    @staticmethod
    def architecture(cfg: ImageModelConfig, classes: int, side: int) -> nn.Module:
        raise NotImplementedError

    def __init__(self, cfg: ImageModelConfig, labels: LabelSet, module: ImageClassifierModule, tta: str = "none",
                 side: int = FACE_SIDE):
        self.cfg, self.labels, self.module, self.tta, self.side = cfg, labels, module, tta, side
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float32

    @classmethod
    def input_spec(cls, cfg: ImageModelConfig, side: int = FACE_SIDE) -> dict[str, Any]:
        return {"kind": "image", "side": side, "channels": 1, "crop": cfg.crop_size}

    @classmethod
    def summary(cls, cfg: ImageModelConfig) -> str:
        return cls.name + (f", {cfg.crop_size}x{cfg.crop_size} crops" if cfg.crop_size else "")

    @classmethod
    def hyperparameters(cls, cfg: ImageModelConfig) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "augment"}

    def card(self):
        card = self.describe(self.cfg, self.labels, config=dataclasses.asdict(self.cfg), tta=self.tta)
        return self.with_calibration(dataclasses.replace(card, input=self.input_spec(self.cfg, self.side)))

    @classmethod
    def build(cls, cfg: ImageModelConfig, labels: LabelSet, side: int = FACE_SIDE) -> ImageClassifierModule:
        """The network for ``side`` x ``side`` images; a crop larger than the images is refused here, where
        their side is known (the config checks the rest)."""
        if cfg.crop_size is not None and cfg.crop_size > side:
            raise ConfigError("model", [f"model.crop_size: expected a whole number of pixels from 8 to the image "
                                        f"side ({side}), got {cfg.crop_size!r}"])
        return ImageClassifierModule(cls.architecture, cfg, len(labels), side)

    @classmethod
    def from_config(cls, cfg: ImageModelConfig, labels: LabelSet, dataset=None) -> ImageClassifier:
        side = FACE_SIDE if dataset is None else int(dataset.split("train").inputs.shape[-1])
        return cls(cfg, labels, cls.build(cfg, labels, side), side=side)

    def task(self, dataset, run_cfg) -> TrainTask:
        train, val = dataset.split("train"), dataset.split("validation")
        pixels = train.inputs.astype(np.float32) / 255.0
        self.module.normalise.mean.fill_(float(pixels.mean()))
        self.module.normalise.std.fill_(float(pixels.std()) or 1.0)
        augment = batch_augmenter(self.cfg.augment, seed=run_cfg.seed)
        return TrainTask(self.module, ImageSet(train.inputs, train.labels, train.soft_labels),
                         ImageSet(val.inputs, val.labels), collate_images, self.labels.names,
                         train_labels=train.labels, augment=augment)

    def prepare_training(self, run_cfg) -> None:
        if isinstance(self.cfg, ConvConfig) and self.cfg.channels_last:  # CPU too: 1.15x (vgg-fer), 1.34x (cnn-small)
            self.module.channels_last = True
            self.module.to(memory_format=torch.channels_last)

    def set_inference(self, eval_cfg) -> None:
        self.tta = eval_cfg.tta  # one of EvalConfig's modes (the config loader checks it)

    @torch.inference_mode()
    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        images = np.asarray(inputs, dtype=np.uint8)  # (N, H, W); a list of (H, W) arrays stacks the same way
        if images.ndim == 2:  # one image
            images = images[None]
        self.module.to(self.device).eval()
        out = np.empty((len(images), len(self.labels)), dtype=np.float64)
        batch_size = 1 if self.per_example else batch_size
        for start in range(0, len(images), batch_size):
            x = to_pixels(images[start:start + batch_size]).to(self.device, self.dtype)
            probs = torch.stack([torch.softmax(self.module(pixels=v).float(), -1)
                                 for v in tta_views(x, self.tta, self.cfg.crop_size)]).mean(0)
            out[start:start + len(x)] = probs.cpu().numpy()
        return out

    def save(self, folder: Path) -> None:
        write_model_card(self.save_weights(folder), self.card())

    @classmethod
    def load(cls, folder: Path) -> ImageClassifier:
        from safetensors.torch import load_file

        card = read_model_card(folder)
        cfg = cls.config_class.from_saved(card["config"], source=str(Path(folder) / MODEL_FILE))
        labels = LabelSet.from_dict(card["labels"])
        side = int(card.get("input", {}).get("side", FACE_SIDE))
        module = cls.build(cfg, labels, side)
        state = load_file(str(Path(folder) / "model.safetensors"))
        fit_shapes(module, state)  # channel-pruned CNNs (emolab compress) are narrower than their config
        module.load_state_dict(state)
        module.eval()
        return cls(cfg, labels, module, card.get("tta", "none"), side=side)


@register_model("mlp")
class MlpClassifier(ImageClassifier):
    """Flatten -> hidden -> classes: the first face baseline of a practitioner report."""

    config_class = MlpConfig
    family = "dense"  # a dense network on pixels, not a CNN (its config has no channels_last)
    architecture = staticmethod(mlp)


@register_model("cnn-small")
class SmallCnnClassifier(ImageClassifier):
    config_class = CnnConfig
    architecture = staticmethod(cnn_small)


@register_model("vgg-fer")
class VggClassifier(ImageClassifier):
    config_class = VggConfig
    architecture = staticmethod(vgg_fer)


@register_model("resnet18-fer")
class ResNetClassifier(ImageClassifier):
    config_class = ResNetConfig
    architecture = staticmethod(resnet18_fer)
