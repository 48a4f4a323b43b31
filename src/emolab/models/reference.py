"""A pretrained face CNN from PyPI as a reference model: the 3-conv network (4.3M parameters, FER2013's
7 labels, gray 48x48 in [0, 1]) that the ``what-the-face-classification`` package ships as
``active_model.pth``.

``model.name: what-the-face`` loads those weights instead of training: its one history line holds its
train and validation metrics, and everything after (metrics, analysis, report, compression, export)
treats it like a trained face model. The package is installed without its dependencies (its own code
imports torchvision and OpenCV, which emolab does not use): ``pip install --no-deps
what-the-face-classification``; only its weights file is read.
"""

from __future__ import annotations

import importlib.util
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from emolab.errors import EmolabError
from emolab.labels import FER2013_LABELS
from emolab.models.registry import register_model
from emolab.models.vision import ImageClassifier, ImageModelConfig
from emolab.records import FACE_SIDE, LabelSet

PACKAGE = "what_the_face_classification"
NAME = "what-the-face"


def reference_net(cfg: ImageModelConfig, classes: int, side: int) -> nn.Module:
    """The package's ``SimpleConvolutionalNetwork`` as built by its ``Image_classifier``: three unpadded
    3x3 convs (28, 56, 112 channels) with tanh and 2x2 max-pool, then 1792 -> 2000 -> 304 -> 7; the layer
    names match its state dict."""
    if side != FACE_SIDE or classes != len(FER2013_LABELS):
        raise EmolabError(f"the {NAME} reference takes 48x48 faces and predicts FER2013's 7 labels; got "
                          f"{side}x{side} and {classes} labels", hint="use it with data.name: fer2013")
    layers: list[tuple[str, nn.Module]] = []
    for i, (c_in, c_out) in enumerate(((1, 28), (28, 56), (56, 112)), start=1):
        layers += [(f"conv{i}", nn.Conv2d(c_in, c_out, 3)), (f"tanh{i}", nn.Tanh()), (f"pool{i}", nn.MaxPool2d(2))]
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(112 * 4 * 4, 2000)), ("relu1", nn.ReLU()),
               ("fc2", nn.Linear(2000, 304)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(304, classes))]
    return nn.Sequential(OrderedDict(layers))



def weights_file() -> Path:
    """``active_model.pth`` of the installed package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    path = Path(spec.origin).parent / "active_model.pth" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise EmolabError(f"the {NAME} reference model needs the {PACKAGE} package's weights",
                          hint="pip install --no-deps what-the-face-classification  (offline from PyPI; "
                               "--no-deps skips its torchvision and OpenCV requirements)")
    return path


@register_model(NAME)
class ReferenceFaceClassifier(ImageClassifier):
    """Pretrained, not trained: ``fit`` loads the package's weights and scores them on train and validation."""

    supports_resume = False
    trains_in_loop = False
    training = "pretrained"
    family = "cnn"
    architecture = staticmethod(reference_net)

    @classmethod
    def summary(cls, cfg: ImageModelConfig) -> str:
        return f"{NAME} (pretrained 3-conv FER2013 CNN)"

    @classmethod
    def hyperparameters(cls, cfg: ImageModelConfig) -> dict:
        return {"name": cfg.name}  # fixed by the package's weights

    @classmethod
    def from_config(cls, cfg: ImageModelConfig, labels: LabelSet, dataset=None) -> ReferenceFaceClassifier:
        if tuple(labels.names) != FER2013_LABELS:
            raise EmolabError(f"the {NAME} reference predicts FER2013's labels {list(FER2013_LABELS)}; this dataset "
                              f"has {list(labels.names)}", hint="use it with data.name: fer2013")
        return super().from_config(cfg, labels, dataset)

    def fit(self, dataset, run_cfg, logger=None, *, workdir=None, resume=False):
        from emolab.metrics import one_pass_record

        start = time.perf_counter()
        self.module.net.load_state_dict(torch.load(weights_file(), map_location="cpu", weights_only=True))
        self.module.normalise.mean.fill_(0.0)  # the package feeds [0, 1] pixels as they are
        self.module.normalise.std.fill_(1.0)
        self.module.to(self.device).eval()
        record = one_pass_record(self, dataset, time.perf_counter() - start)
        if logger is not None:
            logger.on_epoch(record)
        return [record]
