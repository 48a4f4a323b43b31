"""Classifiers served by ONNX Runtime: what ``emolab export --format onnx`` writes.

A text folder holds ``model.onnx`` (fp32, or int8 after static quantization: batched like fp32; or, from
``emolab compress``'s ``onnx-int8-dynamic``, dynamic int8 run one text at a time), the tokenizer files and a
``config.json`` at its root (the layout ONNX Runtime and Optimum users expect) and the model card; a face folder holds ``model.onnx`` (fp32, or int8 after static quantization) and the card with the
image side and test-time augmentation. ``emolab predict`` loads either like any run, with no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from emolab.errors import EmolabError
from emolab.models.length_batches import length_batches
from emolab.models.registry import Classifier, read_model_card, register_model, write_model_card
from emolab.records import LabelSet, ModelCard

ONNX_FILE = "model.onnx"


def _session(path: Path, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a declared dependency
        raise EmolabError("ONNX models need onnxruntime", hint="pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between runs: spinning worker threads hold the cores after every call, slowing the
    # PyTorch work beside them (and, in `emolab compress`, the next model timed) on a small shared CPU.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _Deployed(Classifier):
    """What every ONNX classifier shares: it predicts, it cannot be trained."""

    family = "onnx"
    training = "none"
    info: dict

    @classmethod
    def from_config(cls, cfg, labels, dataset=None):
        raise EmolabError("an ONNX model cannot be trained", hint="train a model, then `emolab export RUN --format onnx`")

    def fit(self, *args, **kwargs):
        raise EmolabError("an ONNX model cannot be trained", hint="fine-tune the PyTorch run, then export it again")

    def num_parameters(self) -> int:
        return int(self.info.get("parameters", 0))

    def set_threads(self, threads: int) -> None:
        self.session = _session(self.folder / ONNX_FILE, threads)

    def extra(self) -> dict:
        """The model card's own fields (besides what every card has)."""
        raise NotImplementedError

    def extra_files(self) -> list[str]:
        """Files beside ``model.onnx`` that a copy of the folder needs."""
        return []

    def input(self) -> dict:
        raise NotImplementedError

    def card(self) -> ModelCard:
        source = self.info.get("source_summary") or self.info.get("source") or "a model"
        how = "int8" if self.info.get("int8") else "fp32"
        return self.with_calibration(ModelCard(
            model=self.name, labels=self.labels, modality=self.modality, input=self.input(),
            summary=f"{source} (ONNX Runtime, {how})", family=self.family, training=self.training,
            hyperparameters={"int8": bool(self.info.get("int8")), "opset": self.info.get("opset")}, extra=self.extra()))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if folder.resolve() != self.folder.resolve():
            shutil.copy2(self.folder / ONNX_FILE, folder / ONNX_FILE)
            for extra in self.extra_files():
                shutil.copy2(self.folder / extra, folder / extra)
            if (self.folder / "tokenizer").is_dir():  # exports written before the tokenizer sat at the root
                shutil.copytree(self.folder / "tokenizer", folder / "tokenizer", dirs_exist_ok=True)
        write_model_card(folder, self.card())


@register_model("onnx")
class OnnxClassifier(_Deployed):
    """Tokenizer + ONNX Runtime session; ``predict_proba`` runs texts in batches of similar length, each padded
    to its longest text (``length_batches``)."""

    def __init__(self, folder: Path, labels: LabelSet, tokenizer, *, max_length: int, inputs: list[str],
                 info: dict, threads: int | None = None):
        self.folder, self.labels, self.tokenizer = Path(folder), labels, tokenizer
        self.max_length, self.inputs, self.info = max_length, list(inputs), dict(info)
        self.session = _session(self.folder / ONNX_FILE, threads)

    @property
    def per_example(self) -> bool:
        """Dynamically quantized graphs scale activations per call, so a text's scores would depend on the texts
        batched with it (3 of 800 emotion test texts change label between batch 1 and 32); such graphs run one
        text at a time. Static int8 graphs (fixed activation scales) and fp32 graphs are batched. The kind is read
        from the export's metadata (``activations``; older exports only name it in ``quantization``)."""
        kind = self.info.get("activations")
        return kind == "dynamic" if kind else "dynamic" in str(self.info.get("quantization") or "")

    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        texts = list(inputs)
        out = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        if not texts:
            return out
        if self.per_example:
            batch_size = 1
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length,
                             return_token_type_ids="token_type_ids" in self.inputs)
        lengths = np.array([len(x) for x in enc["input_ids"]])
        pad = self.tokenizer.pad_token_id or 0
        for idx in length_batches(lengths, batch_size):
            width = int(lengths[idx].max())
            feed = {}
            for key in self.inputs:
                fill = pad if key == "input_ids" else 0
                feed[key] = np.array([enc[key][i] + [fill] * (width - len(enc[key][i])) for i in idx], dtype=np.int64)
            logits = self.session.run(None, feed)[0].astype(np.float64)
            out[idx] = 1 / (1 + np.exp(-logits)) if self.labels.multi_label else _softmax(logits)
        return out

    def as_read(self, inputs) -> list:
        """The token ids of each text (after the tokenizer's normalisation and truncation)."""
        return [tuple(ids) for ids in self.tokenizer(list(inputs), truncation=True, max_length=self.max_length)["input_ids"]]

    def input(self) -> dict:
        return {"kind": "text", "max_length": self.max_length}

    def extra(self) -> dict:
        return {"max_length": self.max_length, "inputs": self.inputs, "onnx": self.info}

    def extra_files(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_file() and p.suffix in (".json", ".txt", ".model")
                      and p.name != "emolab_model.json")

    @classmethod
    def load(cls, folder: Path, *, threads: int | None = None) -> OnnxClassifier:
        folder = Path(folder)
        card = read_model_card(folder)
        _check(folder)
        tokenizer = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder  # older exports: tokenizer/
        return cls(folder, LabelSet.from_dict(card["labels"]), _tokenizer(tokenizer),
                   max_length=card["max_length"], inputs=card["inputs"], info=card.get("onnx", {}), threads=threads)


def _tokenizer(folder: Path):
    """The export's fast tokenizer read from its ``tokenizer.json`` directly: AutoTokenizer would first load the
    model config, and transformers' config module imports torch, which serving an ONNX export never needs."""
    if (folder / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _check(folder: Path) -> None:
    if not (folder / ONNX_FILE).is_file():
        raise EmolabError(f"{folder} has no {ONNX_FILE}", hint="export the run again: emolab export RUN --format onnx")


@register_model("onnx-image")
class OnnxImageClassifier(_Deployed):
    """A face CNN as an ONNX graph: input ``pixels`` float ``(N, 1, H, W)`` in [0, 1] (normalisation is in
    the graph); the run's test-time augmentation is applied around it, as the PyTorch model does."""

    modality = "image"

    def __init__(self, folder: Path, labels: LabelSet, *, side: int, tta: str, info: dict, threads: int | None = None,
                 crop: int | None = None):
        self.folder, self.labels, self.side, self.tta, self.info = Path(folder), labels, side, tta, dict(info)
        self.crop = crop  # the model's central window (model.crop_size; the crop itself is in the graph)
        self.session = _session(self.folder / ONNX_FILE, threads)

    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        from emolab.models.image_augment import tta_views
        from emolab.models.vision import to_pixels

        images = np.asarray(inputs, dtype=np.uint8)
        if images.ndim == 2:
            images = images[None]
        out = np.empty((len(images), len(self.labels)), dtype=np.float64)
        for start in range(0, len(images), batch_size):
            views = tta_views(to_pixels(images[start:start + batch_size]), self.tta, self.crop)
            probs = [_softmax(self.session.run(None, {"pixels": v.contiguous().numpy()})[0].astype(np.float64))
                     for v in views]
            out[start:start + len(probs[0])] = np.mean(probs, axis=0)
        return out

    def input(self) -> dict:
        return {"kind": "image", "side": self.side, "channels": 1, "crop": self.crop}

    def extra(self) -> dict:
        return {"side": self.side, "tta": self.tta, "crop": self.crop, "onnx": self.info}

    @classmethod
    def load(cls, folder: Path, *, threads: int | None = None) -> OnnxImageClassifier:
        folder = Path(folder)
        card = read_model_card(folder)
        _check(folder)
        return cls(folder, LabelSet.from_dict(card["labels"]), side=card["side"], tta=card.get("tta", "none"),
                   info=card.get("onnx", {}), threads=threads, crop=card.get("crop"))
