"""MTCNN (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks"): three small CNNs in a cascade, with five landmarks (eyes, nose, mouth corners) per face.

The weights are the ones ``facenet-pytorch`` ships in its wheel (``facenet_pytorch/data/{p,r,o}net.pt``,
MIT licence), installed with ``pip install --no-deps facenet-pytorch``: the package itself is never imported,
since it imports torchvision, which pins another torch (its PyPI wheel does not load beside torch 2.13's CPU
build). The files are plain state dicts, read with ``torch.load(weights_only=True)``. The networks and the
cascade follow facenet-pytorch's layout of those weights (its dense layers see the feature map transposed).
The three networks are exported to ONNX in memory once and run with ONNX Runtime: on 2 CPU cores that is
about ten times faster than PyTorch's eager kernels for their few, thin channels.
"""

from __future__ import annotations

import functools
import importlib.util
import io
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from emolab.errors import EmolabError

INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0 (only its weight files are used; `make` installs it)"


def weights_dir() -> Path:
    spec = importlib.util.find_spec("facenet_pytorch")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise EmolabError("the MTCNN face detector needs facenet-pytorch's weight files", hint=INSTALL_HINT)
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not all((folder / f"{n}.pt").is_file() for n in ("pnet", "rnet", "onet")):
        raise EmolabError(f"MTCNN weights missing in {folder}", hint=INSTALL_HINT)
    return folder


class _Stage(nn.Module):
    """conv (+PReLU, + optional max-pool) layers, then (for R/O) dense layers on the transposed feature map."""

    def __init__(self, convs: list[tuple[int, int, int, tuple | None]], dense: list[tuple[int, int]], heads: dict):
        super().__init__()
        for i, (cin, cout, k, pool) in enumerate(convs, 1):
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, k))
            setattr(self, f"prelu{i}", nn.PReLU(cout))
            if pool:
                setattr(self, f"pool{i}", nn.MaxPool2d(*pool, ceil_mode=True))
        first = len(convs) + 1
        for j, (din, dout) in enumerate(dense, first):
            setattr(self, f"dense{j}", nn.Linear(din, dout))
            setattr(self, f"prelu{j}", nn.PReLU(dout))
        self.n_convs, self.n_dense = len(convs), len(dense)
        self.head_names = list(heads)
        for name, layer in heads.items():
            setattr(self, name, layer)

    def forward(self, x):
        for i in range(1, self.n_convs + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            if hasattr(self, f"pool{i}"):
                x = getattr(self, f"pool{i}")(x)
        if self.n_dense:
            x = x.permute(0, 3, 2, 1).flatten(1)
            for j in range(self.n_convs + 1, self.n_convs + 1 + self.n_dense):
                x = getattr(self, f"prelu{j}")(getattr(self, f"dense{j}")(x))
        return [getattr(self, name)(x) for name in self.head_names]


def _pnet() -> _Stage:  # fully convolutional: a 12x12 window every 2 pixels
    return _Stage([(3, 10, 3, (2, 2)), (10, 16, 3, None), (16, 32, 3, None)], [],
                  {"conv4_1": nn.Conv2d(32, 2, 1), "conv4_2": nn.Conv2d(32, 4, 1)})


def _rnet() -> _Stage:  # 24x24 crops
    return _Stage([(3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)], [(576, 128)],
                  {"dense5_1": nn.Linear(128, 2), "dense5_2": nn.Linear(128, 4)})


def _onet() -> _Stage:  # 48x48 crops, with landmarks
    return _Stage([(3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)), (64, 128, 2, None)], [(1152, 256)],
                  {"dense6_1": nn.Linear(256, 2), "dense6_2": nn.Linear(256, 4), "dense6_3": nn.Linear(256, 10)})


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first (overlap = IoU, by OpenCV; or intersection
    over the smaller area)."""
    if mode == "union":
        xywh = np.column_stack([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]]).tolist()
        return np.asarray(cv2.dnn.NMSBoxes(xywh, scores.astype(float).tolist(), 0.0, threshold),
                          dtype=int).reshape(-1)
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        order = rest[inter / np.minimum(area[i], area[rest]) <= threshold]
    return np.array(keep, dtype=int)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w / 2 - side / 2
    out[:, 1] = boxes[:, 1] + h / 2 - side / 2
    out[:, 2:4] = out[:, :2] + side[:, None]
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray, inclusive: bool = True) -> np.ndarray:
    """Boxes moved by the networks' offsets, as shares of their sides (counted inclusively in stages 2 and 3,
    as the reference implementation does, not in stage 1)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0] + inclusive, boxes[:, 3] - boxes[:, 1] + inclusive
    out[:, :4] = boxes[:, :4] + reg * np.stack([w, h, w, h], 1)
    return out


@functools.cache
def _onnx_nets() -> dict[str, bytes]:
    """Each network with facenet-pytorch's weights, as ONNX (batch, height and width dynamic)."""
    folder, out = weights_dir(), {}
    for name, build, side in (("pnet", _pnet, 24), ("rnet", _rnet, 24), ("onet", _onet, 48)):
        net = build()
        net.load_state_dict(torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True))
        buf = io.BytesIO()
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, side, side),), buf, input_names=["x"],
                          output_names=[f"out{i}" for i in range(len(net.head_names))],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, opset_version=17, dynamo=False)
        out[name] = buf.getvalue()
    return out


class MTCNN:
    """``detect(rgb HxWx3, min_face)`` -> ``(boxes Nx5 [x0, y0, x1, y1, score], landmarks Nx5x2)``."""

    def __init__(self, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # one: its tensors are too small to share (1.6x faster than two)
        self.nets = {name: ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
                     for name, model in _onnx_nets().items()}
        self.thresholds, self.factor = thresholds, factor

    def _run(self, name: str, images: list[np.ndarray]) -> list[np.ndarray]:
        """The network on uint8 RGB images, normalised as it was trained: (pixel - 127.5) / 128."""
        x = (np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) - 127.5) / 128
        return self.nets[name].run(None, {"x": x})

    @staticmethod
    def _softmax1(logits: np.ndarray) -> np.ndarray:
        """Probability of class 1 of two logits along axis 1."""
        return 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))

    @staticmethod
    def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> list[np.ndarray]:
        """Each box of the (HxWx3 uint8) image resized to ``size``; outside the image is black. Boxes count
        pixels from 1, both ends included (MTCNN's convention): pixels ``x0 - 1`` to ``x1 - 1``."""
        h, w = image.shape[:2]
        out = []
        for x0, y0, x1, y1 in np.trunc(boxes[:, :4]).astype(int) - [1, 1, 0, 0]:
            sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if (sx0, sy0, sx1, sy1) == (x0, y0, x1, y1) and x1 > x0 and y1 > y0:
                patch = image[y0:y1, x0:x1]
            else:
                patch = np.zeros((max(1, y1 - y0), max(1, x1 - x0), 3), np.uint8)
                if sx1 > sx0 and sy1 > sy0:
                    patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
            out.append(cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA))
        return out

    def detect(self, rgb: np.ndarray, min_face: int = 20) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        image = np.ascontiguousarray(rgb, dtype=np.uint8)
        none = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        # stage 1: PNet over an image pyramid whose first level maps min_face to the 12-pixel window
        scale, found, level = 12.0 / min_face, [], image
        while min(h, w) * scale >= 12:
            # the first level by area; each next one from the one before (a 0.709 step: bilinear is enough, and
            # 18x faster than area from the full image)
            level = cv2.resize(level, (int(w * scale + 1), int(h * scale + 1)),
                               interpolation=cv2.INTER_AREA if level is image else cv2.INTER_LINEAR)
            logits, reg = self._run("pnet", [level])
            prob = self._softmax1(logits)[0]
            ys, xs = np.nonzero(prob >= self.thresholds[0])
            if len(ys):
                q0 = np.floor((2 * np.stack([xs, ys], 1) + 1) / scale)
                q1 = np.floor((2 * np.stack([xs, ys], 1) + 12) / scale)
                boxes = np.concatenate([q0, q1, prob[ys, xs][:, None], reg[0][:, ys, xs].T], 1)
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale *= self.factor
        if not found:
            return none
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        moved = _regress(boxes[:, :5], boxes[:, 5:9], inclusive=False)
        boxes = _square(np.concatenate([moved[:, :4], boxes[:, 4:5]], 1))
        # stage 2: RNet refines and rejects on 24x24 crops
        logits, reg = self._run("rnet", self._crops(image, boxes, 24))
        score = self._softmax1(logits)
        keep = score > self.thresholds[1]
        boxes, reg = np.concatenate([boxes[keep, :4], score[keep, None]], 1), reg[keep]
        if not len(boxes):
            return none
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))
        # stage 3: ONet on 48x48 crops gives the final score, box and landmarks
        logits, reg, points = self._run("onet", self._crops(image, boxes, 48))
        score = self._softmax1(logits)
        keep = score > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg, points = reg[keep], points[keep]
        if not len(boxes):
            return none
        bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        marks = np.stack([bw[:, None] * points[:, :5] + boxes[:, :1] - 1,
                          bh[:, None] * points[:, 5:] + boxes[:, 1:2] - 1], 2)
        boxes = _regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min")
        return boxes[pick].astype(np.float32), marks[pick].astype(np.float32)
