"""The models a server holds: loaded from a run directory, a compressed model folder or an export folder,
each under a name, with what the API and the page show about it (its card and the run's test metrics).

Inputs arrive as JSON or uploads; this module turns them into what the model reads (texts, or grayscale
images at the model's side) and checks every limit first, naming the field and the limit it broke."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emolab.errors import EmolabError
from emolab.models.registry import MODEL_FILE, Classifier, load_model, model_card
from emolab.records import ModelCard
from emolab.rundir import decision_thresholds, run_of
from emolab.serving.settings import Limits

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls and DEL, but tab, \n and \r


class RequestError(Exception):
    """A bad request: HTTP ``status``, the ``field`` at fault and what is wrong with it."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def _model_folder(path: Path) -> Path:
    if (path / "model" / MODEL_FILE).is_file():
        return path / "model"
    if (path / MODEL_FILE).is_file():
        return path
    if (path / "modeling_emolab.py").is_file():
        raise EmolabError(f"{path} is an `emolab export --format hf` folder, for transformers' pipeline()",
                          hint="serve the run itself, or its `emolab export --format onnx` folder")
    raise EmolabError(f"{path} holds no emolab model", hint="give a run directory, a folder under "
                      "RUN/compression/models/, or an `emolab export --format onnx` folder")


def _locate(spec: str) -> tuple[str, Path, Path]:
    """``PATH`` or ``NAME=PATH`` -> (the name it is served under, the path given, its model folder)."""
    name, _, where = spec.rpartition("=") if "=" in spec else ("", "", spec)
    path = Path(where)
    if not path.exists():
        raise EmolabError(f"model not found: {path}", hint="give a run directory or an exported model folder")
    folder = _model_folder(path)
    if not name:
        name = folder.parent.name if folder.name == "model" else folder.name
    return name, path, folder


def served_name(spec: str) -> str:
    """The name ``ServedModel.load(spec)`` serves a model under, read without loading the model."""
    return _locate(spec)[0]


def _run_metrics(path: Path) -> dict[str, Any]:
    """The test (else validation) accuracy and macro-F1 of the run a model folder belongs to, if any."""
    run = run_of(path)
    if run is None:
        return {}
    metrics = run.metrics
    split = "test" if "test" in metrics else "validation"
    part = metrics.get(split, {})
    return {"split": split, **{k: part[k] for k in ("accuracy", "macro_f1", "micro_f1") if k in part}}


@dataclass
class ServedModel:
    name: str
    path: Path
    model: Classifier
    card: ModelCard
    metrics: dict[str, Any] = field(default_factory=dict)
    thresholds: Any = 0.5  # where a multi-label model decides (the run's tuned thresholds)

    @classmethod
    def load(cls, spec: str) -> ServedModel:
        """``PATH`` or ``NAME=PATH``; the default name is the run's (or the folder's) name."""
        name, path, folder = _locate(spec)
        card = model_card(folder)
        return cls(name, path, load_model(folder), card, _run_metrics(folder),
                   decision_thresholds(folder, card.labels.names, calibrated=True))

    def describe(self) -> dict[str, Any]:
        metrics = dict(self.metrics)
        return {"name": self.name, "modality": self.card.modality, "labels": list(self.card.labels.names),
                "multi_label": self.card.labels.multi_label, "summary": self.card.summary, "input": self.card.input,
                "model": self.card.model, "metrics": metrics}

    # --- requests -> model inputs ---
    def parse_json(self, body: Any, limits: Limits) -> tuple[list, int | None]:
        """``{"inputs": ..., "parameters": {"top_k": k}}`` -> (texts, or ``(rgb, scale)`` per image: whole, for
        face detection, as `emolab predict` reads a photo; top_k)."""
        if not isinstance(body, dict) or "inputs" not in body:
            raise RequestError(422, "inputs", 'expected a JSON object {"inputs": ..., "parameters": {...}}')
        raw = body["inputs"]
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise RequestError(422, "inputs", "no inputs given")
        if len(items) > limits.max_items:
            raise RequestError(413, "inputs", f"{len(items)} items; at most {limits.max_items} per request")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                kind = "base64 image data" if self.card.image else "text"
                raise RequestError(422, f"inputs[{i}]", f"expected a string ({kind}), got {type(item).__name__}")
        top_k = self.top_k(body.get("parameters"))
        if self.card.image:
            return self.decode_images([(item, f"inputs[{i}]") for i, item in enumerate(items)], limits), top_k
        return [self.check_text(t, f"inputs[{i}]", limits) for i, t in enumerate(items)], top_k

    @staticmethod
    def top_k(params: Any) -> int | None:
        if params is None:
            return None
        if not isinstance(params, dict):
            raise RequestError(422, "parameters", "expected an object, e.g. {\"top_k\": 3}")
        unknown = sorted(set(params) - {"top_k"})
        if unknown:
            raise RequestError(422, f"parameters.{unknown[0]}", "unknown parameter; supported: top_k")
        k = params.get("top_k")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise RequestError(422, "parameters.top_k", f"expected a positive integer, got {k!r}")
        return k

    @staticmethod
    def check_text(text: str, where: str, limits: Limits) -> str:
        """A text a tokenizer can read: within the length limit, not blank, encodable as UTF-8 (a lone
        surrogate such as ``"\\ud800"`` is valid JSON but not text) and free of control characters other
        than tab and line breaks."""
        if len(text) > limits.max_text_chars:
            raise RequestError(413, where, f"{len(text)} characters; at most {limits.max_text_chars}")
        if not text.strip():
            raise RequestError(422, where, "empty text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RequestError(422, where, f"not valid Unicode text: {text[exc.start]!a} at character {exc.start} "
                                           "(a lone surrogate)") from None
        bad = _CONTROL.search(text)
        if bad:
            raise RequestError(422, where, f"control character {bad.group()!a} at character {bad.start()}")
        return text

    def decode_images(self, items: list[tuple[str | bytes, str]], limits: Limits) -> list:
        """``(data, field)`` pairs -> ``(rgb, scale)`` per image; every size is read from the image headers
        and checked, one by one and all together (``max_request_pixels``), before any image is decoded."""
        datas = [(self.image_bytes(data, where, limits), where) for data, where in items]
        total = sum(check_pixels(data, where, limits.max_image_pixels) for data, where in datas)
        if total > limits.max_request_pixels:
            raise RequestError(413, "inputs", f"{total} pixels in all the images of the request; at most "
                                              f"{limits.max_request_pixels}")
        return [self.decode_photo(data, where, limits) for data, where in datas]

    def decode_photo(self, data: str | bytes, where: str, limits: Limits) -> tuple[np.ndarray, float]:
        """Base64 text (optionally a ``data:image/...;base64,`` URL) or raw bytes -> the whole photo, RGB
        (EXIF-rotated, at most 2048 px a side, as `emolab predict` reads it), and the scale back to its own
        pixels."""
        from emolab.faces.photos import read_photo

        data = self.image_bytes(data, where, limits)
        check_pixels(data, where, limits.max_image_pixels)
        try:
            return read_photo(io.BytesIO(data))
        except EmolabError:
            raise RequestError(422, where, "not a readable image") from None

    @staticmethod
    def image_bytes(data: str | bytes, where: str, limits: Limits) -> bytes:
        """Base64 text (or a ``data:`` URL) or raw bytes -> bytes, within the byte limit."""
        if isinstance(data, str):
            payload = data.partition(",")[2] if data.startswith("data:") else data  # no comma: no data
            if len(payload) * 3 // 4 > limits.max_image_bytes:
                raise RequestError(413, where, f"image over {limits.max_image_bytes} bytes")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(422, where, "not valid base64 image data") from None
        if len(data) > limits.max_image_bytes:
            raise RequestError(413, where, f"image of {len(data)} bytes; at most {limits.max_image_bytes}")
        return data

    def format(self, probs: np.ndarray, top_k: int | None) -> list[list[dict[str, Any]]]:
        """Each input's labels sorted by score (the Hugging Face text-classification convention); multi-label
        models give every label over its tuned threshold unless ``top_k`` asks for the k best."""
        names = self.card.labels.names
        out = []
        for row in probs:
            order = np.argsort(-row, kind="stable")
            if self.card.labels.multi_label and top_k is None:
                order = [i for i in order if row[i] >= self.thresholds[i]]
            out.append([{"label": names[i], "score": float(row[i])} for i in list(order)[:top_k]])
        return out


def check_pixels(data: bytes, where: str, max_pixels: int) -> int:
    """An image's pixel count, read from its header; an image over ``max_pixels`` is refused before it is
    decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise RequestError(413, where, f"{im.width}x{im.height} pixels; at most {max_pixels}")
            return im.width * im.height
    except Image.DecompressionBombError:
        raise RequestError(413, where, f"image over {max_pixels} pixels (a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise RequestError(422, where, f"not a readable image ({type(exc).__name__})") from None

