"""Int8 quantization: PyTorch dynamic int8, and ONNX export with ONNX Runtime int8.

Dynamic quantization stores the weights of linear layers as int8 and quantizes activations on the fly
per call; nothing is retrained, but an example's scores then depend on the examples batched with it (the
activation scale is taken over the whole batch), so such models run one example at a time. The ONNX path
exports the fp32 graph (TorchScript exporter, dynamic batch and sequence axes), then quantizes it
statically with ``onnxruntime.quantization``: activation scales calibrated once on training texts or
images, weights per channel (batch norm folded first for CNNs). Fixed scales make a batched example's
scores its own, so static int8 graphs are batched like fp32. The dynamic ONNX text graph is kept as a
separate method (``onnx-int8-dynamic``)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emolab.errors import EmolabError
from emolab.models.onnx import ONNX_FILE, OnnxClassifier, OnnxImageClassifier
from emolab.models.torch_base import TorchClassifier
from emolab.records import FACE_SIDE


def dynamic_int8(model):
    """A copy of ``model`` whose nn.Linear layers run in int8 (PyTorch dynamic quantization, CPU)."""
    q = copy.deepcopy(model)
    q.to_precision("fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q.module = torch.ao.quantization.quantize_dynamic(q.module.cpu().eval(), {nn.Linear}, dtype=torch.qint8)
    q.device = torch.device("cpu")
    q.per_example = True  # activations are scaled per call: batch-mates would change an example's scores
    return q


def calibration_in_graph(model):
    """The model's calibration as its ONNX graph will apply it (on the logits: exact where one forward pass gives
    the scores), or None: no calibration, or test-time augmentation, whose views are averaged before emolab
    calibrates (the deployed classifier then applies it after averaging, as the run does)."""
    cal = model.calibration
    if cal is None or getattr(model, "tta", "none") != "none":
        return None
    return dataclasses.replace(cal, in_graph=True)


def _export_graph(model, path: Path, side: int = FACE_SIDE) -> list[str]:
    """Write the fp32 graph of a text or face classifier to ``path`` (calibrated logits where
    :func:`calibration_in_graph` says so); returns its input names."""
    if not isinstance(model, TorchClassifier):
        raise EmolabError(f"ONNX export supports PyTorch text and face classifiers; got {model.card().summary}",
                          hint="use dynamic-int8 for this model")
    module = copy.deepcopy(model.module).float().cpu().eval()
    if model.modality == "image":
        module.channels_last = False
        module.to(memory_format=torch.contiguous_format)
    if calibration_in_graph(model) is not None:
        module = model.calibration.torch_head(module)
    if model.modality == "image":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(module, (torch.rand(2, 1, side, side),), str(path), input_names=["pixels"],
                                  output_names=["logits"], dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
                                  opset_version=17, dynamo=False)
            except torch.onnx.errors.SymbolicValueError as err:  # e.g. a 5x5 map adaptively pooled to 3x3
                raise EmolabError(f"this face model cannot be exported to ONNX: {str(err).split(' [Caused')[0]}",
                                  hint="pick a model.crop_size whose last feature map is a multiple of 3 (no crop, "
                                       "or vgg-fer), or use the dynamic-int8 method") from None
        return ["pixels"]
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


def _quantize_static(fp32: Path, out: Path, calibration) -> str:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from emolab.models.vision import to_pixels

    class Faces(CalibrationDataReader):
        """Batches of 64 training faces, as the graph's ``pixels`` input."""

        def __init__(self):
            self.batches = iter([{"pixels": to_pixels(calibration[s:s + 64]).numpy()}
                                 for s in range(0, len(calibration), 64)])

        def get_next(self):
            return next(self.batches, None)

    if calibration is None or len(calibration) == 0:
        raise EmolabError("int8 export of a face model needs calibration images",
                          hint="export from a run whose dataset is available (data.path / EMOLAB_DATA_DIR)")
    pre = fp32.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)  # folds batch norm into the convs
    quantize_static(str(pre), str(out), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True)
    return (f"onnxruntime static, QInt8 per-channel weights (7-bit range), QUInt8 activations calibrated on "
            f"{len(calibration)} training images")


def _text_batches(model, texts: list[str], names: list[str], size: int = 16) -> list[dict]:
    """Training texts as graph inputs, in batches of ``size`` padded to the batch's longest text."""
    enc = model.encode(list(texts))
    pad = model.tokenizer.pad_token_id or 0
    batches = []
    for s in range(0, len(texts), size):
        rows = range(s, min(s + size, len(texts)))
        width = max(len(enc["input_ids"][i]) for i in rows)
        batches.append({k: np.array([enc[k][i] + [pad if k == "input_ids" else 0] * (width - len(enc[k][i]))
                                     for i in rows], dtype=np.int64) for k in names})
    return batches


def optimize_text_graph(fp32: Path, out: Path, encoder_config, *, attention: bool = True) -> None:
    """ONNX Runtime's transformer optimizer (model_type ``bert``) on an fp32 text graph: LayerNorm,
    SkipLayerNorm, GELU and bias fusions, and fused attention when ``attention``."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_attention = attention
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimize_model(str(fp32), model_type="bert", num_heads=encoder_config.num_attention_heads,
                                   hidden_size=encoder_config.hidden_size, optimization_options=options, opt_level=0)
    optimized.save_model_to_file(str(out))


def _quantize_static_text(model, fp32: Path, out: Path, names: list[str], calibration) -> str:
    """Static int8 in QDQ form: the weights of every linear layer (MatMul with a constant weight) per channel,
    the activations entering them with scales calibrated once on training texts (MinMax). Fixed scales make a
    text's scores independent of its batch-mates and of padding, so the graph can be batched. LayerNorm,
    softmax, GELU, the attention products and the embeddings stay float. ONNX Runtime's transformer optimizer
    is not run first: its fused ops (SkipLayerNormalization, BiasGelu) carry no ONNX type information, so the
    quantizer skipped the activations behind them; ORT fuses the QDQ graph itself when the session loads."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise EmolabError("static int8 export of a text model needs calibration texts",
                          hint="export from a run whose dataset is available (data.path / EMOLAB_DATA_DIR)")
    pre = fp32.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)  # constant folding, shapes and types
    graph = onnx.load(str(pre), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    linear = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]

    class Texts(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(_text_batches(model, calibration, names))

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(pre), str(out), Texts(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                    op_types_to_quantize=["MatMul"], nodes_to_quantize=linear,
                    # float MatMul outputs: ORT runs each as int8 x int8 -> float (MatMulIntegerToFloat), no
                    # requantization before the bias, LayerNorm or GELU (on MiniLM: max probability change
                    # vs fp32 0.014 instead of 0.034)
                    extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]})
    return (f"onnxruntime static, QInt8 per-channel weights (7-bit range) of the {len(linear)} linear layers, "
            f"QUInt8 activations calibrated on {len(calibration)} training texts; LayerNorm, softmax, GELU and "
            "attention products in float")


def hf_layout(model, folder: Path) -> None:
    """The files ONNX Runtime and Optimum users expect beside a text ``model.onnx``: the tokenizer and a
    ``config.json`` (the encoder's config with ``id2label`` / ``label2id``)."""
    import copy as _copy

    model.tokenizer.save_pretrained(folder)
    config = _copy.deepcopy(model.module.encoder.config)
    names = model.labels.names
    config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    config.problem_type = "multi_label_classification" if model.labels.multi_label else "single_label_classification"
    # the graph is not the encoder alone (the encoder config says e.g. BertModel): say what it is
    config.architectures = None
    config.emolab_graph = (f"{type(model.module.encoder).__name__} encoder + {model.cfg.pooling} pooling + linear "
                           "head; inputs input_ids/attention_mask(/token_type_ids), output logits (N, labels)")
    config.save_pretrained(folder)


def _quantize(model, fp32: Path, tmp: Path, names, calibration, *, int8: bool, image: bool, dynamic: bool):
    """Write ``tmp/int8.onnx`` from the fp32 graph as asked; returns how it was quantized (None: not)."""
    if not int8:
        return None
    if image:
        return _quantize_static(fp32, tmp / "int8.onnx", calibration)
    if dynamic:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(tmp / "int8.onnx"), weight_type=QuantType.QInt8)
        return "onnxruntime dynamic, QInt8 weights"
    return _quantize_static_text(model, fp32, tmp / "int8.onnx", names, calibration)


def export_onnx(model, folder: Path, *, int8: bool = False, dynamic: bool = False, source: str = "",
                threads: int | None = None, calibration=None, side: int = FACE_SIDE):
    """Write a deployable ONNX model folder (graph, tokenizer or image side, model card); returns its classifier.
    ``int8``: static int8, activation scales calibrated on ``calibration`` (training images or texts), so a
    batch's examples do not change each other's scores; with ``dynamic`` (text models) activations are scaled
    per call instead (no calibration; the classifier then runs one text at a time)."""
    folder = Path(folder).resolve()  # absolute: the quantizer below runs in a temporary working folder
    folder.mkdir(parents=True, exist_ok=True)
    image = model.modality == "image"
    if dynamic and (image or not int8):
        raise EmolabError("dynamic int8 export applies to text models with int8")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        fp32 = Path(tmp) / ONNX_FILE
        names = _export_graph(model, fp32, side)
        quiet = logging.getLogger()  # ONNX Runtime's quantizer prints its hints on the root logger
        level = quiet.level
        quiet.setLevel(max(level, logging.ERROR))
        try:  # in the temporary folder: ONNX Runtime's tools may leave external-data files in the working folder
            with contextlib.chdir(tmp):
                how = _quantize(model, fp32.resolve(), Path(tmp).resolve(), names, calibration, int8=int8,
                                image=image, dynamic=dynamic)
        finally:
            quiet.setLevel(level)
        (Path(tmp) / ("int8.onnx" if int8 else ONNX_FILE)).replace(folder / ONNX_FILE)
    info = {"int8": int8, "source": source, "source_summary": model.card().summary,
            "parameters": int(sum(p.numel() for p in model.module.parameters())), "opset": 17, "quantization": how,
            "activations": ("dynamic" if dynamic else "static") if int8 else "float"}
    if image:
        deployed = OnnxImageClassifier(folder, model.labels, side=side, tta=model.tta, info=info,
                                       threads=threads, crop=model.cfg.crop_size)
    else:
        hf_layout(model, folder)
        deployed = OnnxClassifier(folder, model.labels, model.tokenizer, max_length=model.cfg.max_length, inputs=names,
                                  info=info, threads=threads)
    deployed.calibration = calibration_in_graph(model) or model.calibration
    deployed.save(folder)  # the model card
    return deployed
