"""Int8 quantization: PyTorch dynamic int8, and ONNX export with ONNX Runtime dynamic int8.

Dynamic quantization stores the weights of linear layers as int8 and quantizes activations on the fly
per batch; nothing is retrained. The ONNX path exports the fp32 graph (TorchScript exporter, dynamic
batch and sequence axes), then quantizes its weights with ``onnxruntime.quantization``.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from emolab.errors import EmolabError
from emolab.models.onnx import ONNX_FILE, OnnxClassifier
from emolab.models.registry import write_model_card


def dynamic_int8(model):
    """A copy of ``model`` whose nn.Linear layers run in int8 (PyTorch dynamic quantization, CPU)."""
    q = copy.deepcopy(model)
    q.to_precision("fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q.module = torch.ao.quantization.quantize_dynamic(q.module.cpu().eval(), {nn.Linear}, dtype=torch.qint8)
    q.device = torch.device("cpu")
    return q


def _export_graph(model, path: Path) -> list[str]:
    """Write the fp32 graph of a text classifier to ``path``; returns its input names."""
    if not hasattr(model, "tokenizer"):
        raise EmolabError(f"ONNX export supports text classifiers; got {type(model).__name__}",
                          hint="use dynamic-int8 for this model")
    module = copy.deepcopy(model.module).float().cpu().eval()
    enc = model.encode(["an example sentence for tracing", "a shorter one"])
    width = max(len(x) for x in enc["input_ids"])
    names = list(enc)
    pad = model.tokenizer.pad_token_id or 0
    args = tuple(torch.tensor([x + [pad if k == "input_ids" else 0] * (width - len(x)) for x in enc[k]]) for k in names)
    axes = {k: {0: "batch", 1: "sequence"} for k in names} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["logits"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    return names


def export_onnx(model, folder: Path, *, int8: bool = False, source: str = "",
                threads: int | None = None) -> OnnxClassifier:
    """Write a deployable ONNX model folder (graph, tokenizer, model card) and load it back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        fp32 = Path(tmp) / ONNX_FILE
        names = _export_graph(model, fp32)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(fp32), str(Path(tmp) / "int8.onnx"), weight_type=QuantType.QInt8)
            (Path(tmp) / "int8.onnx").replace(folder / ONNX_FILE)
        else:
            fp32.replace(folder / ONNX_FILE)
    model.tokenizer.save_pretrained(folder / "tokenizer")
    info = {"int8": int8, "source": source, "parameters": int(sum(p.numel() for p in model.module.parameters())),
            "opset": 17, "quantization": "onnxruntime dynamic, QInt8 weights" if int8 else None}
    write_model_card(folder, OnnxClassifier.name, model.labels,
                     {"max_length": model.cfg.max_length, "inputs": names, "onnx": info})
    return OnnxClassifier.load(folder, threads=threads)
