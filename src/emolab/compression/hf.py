"""Export a text run as a Hugging Face model folder that the ecosystem's own loaders read:
``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)`` and
``transformers.pipeline("text-classification", model=DIR, trust_remote_code=True)``.

The folder holds ``config.json`` (the encoder's config, the pooling head, ``id2label`` / ``label2id`` and
an ``auto_map`` naming the two code files), ``configuration_emolab.py`` and ``modeling_emolab.py`` (the
pooling head's code is copied from :mod:`emolab.models.text`, so it is the same code), ``pipeline_emolab.py``
(the pipeline truncates to the trained length, as emolab does), the weights as ``model.safetensors`` under
emolab's own names, and the tokenizer files (``model_max_length`` = the trained length)."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

from emolab.errors import EmolabError
from emolab.models import text
from emolab.models.text import TransformerClassifier

FILES = Path(__file__).parent / "hf_files"
POOLING_CLASSES = (text.ClsPooling, text.MeanPooling, text.MaxPooling, text.AttentionPooling, text.MeanMaxPooling)


def modeling_source() -> str:
    """``modeling_emolab.py`` with emolab's pooling heads written in."""
    pooling = "\n\n".join(inspect.getsource(c) for c in POOLING_CLASSES)
    table = "POOLINGS = {\n" + "".join(
        f'    "{name}": {"" if cls is text.AttentionPooling else "lambda h: "}{cls.__name__}'
        f'{"" if cls is text.AttentionPooling else "()"},\n'
        for name, cls in zip(("cls", "mean", "max", "attention", "mean-max"), POOLING_CLASSES)) + "}\n"
    return (FILES / "modeling_emolab.py").read_text().replace("# POOLING\n", pooling + "\n\n" + table)


def export_hf(model, folder: Path) -> None:
    """Write ``folder`` for a transformer text model (see the module docstring)."""
    from safetensors.torch import save_file

    if type(model) is not TransformerClassifier:  # a pruned copy's layers no longer match its encoder config
        raise EmolabError(f"--format hf exports trained transformer text runs; this is {model.card().summary}",
                          hint="export the run itself; use --format onnx for face and compressed models")
    folder.mkdir(parents=True, exist_ok=True)
    names = model.labels.names
    encoder = model.module.encoder.config.to_dict()
    for key in ("architectures", "id2label", "label2id", "transformers_version", "torch_dtype", "dtype"):
        encoder.pop(key, None)
    for name in ("configuration_emolab.py", "pipeline_emolab.py"):
        shutil.copy2(FILES / name, folder / name)
    (folder / "modeling_emolab.py").write_text(modeling_source())
    import transformers

    config = {
        # the encoder's type: loaders that only need the tokenizer (AutoTokenizer) read a config transformers
        # knows, with no remote code and so no prompt; AutoModel and pipeline() with trust_remote_code get ours
        "model_type": encoder["model_type"], "architectures": ["EmolabForSequenceClassification"],
        "auto_map": {"AutoConfig": "configuration_emolab.EmolabConfig",
                     "AutoModelForSequenceClassification": "modeling_emolab.EmolabForSequenceClassification"},
        "encoder": encoder, "pooling": model.cfg.pooling, "classifier_dropout": model.cfg.dropout,
        "id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)},
        "problem_type": "multi_label_classification" if model.labels.multi_label else "single_label_classification",
        "transformers_version": transformers.__version__,
        # transformers' pipeline() picks this class: it truncates to the trained length as emolab does
        "custom_pipelines": {"text-classification": {"impl": "pipeline_emolab.EmolabTextClassificationPipeline",
                                                     "pt": ["AutoModelForSequenceClassification"], "tf": [],
                                                     "type": "text"}},
    }
    if model.calibration is not None:  # folded into the head: transformers' softmax gives emolab's calibrated scores
        config["emolab_calibration"] = model.calibration.to_dict()
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.module.state_dict().items()}
    if model.calibration is not None:
        weight, bias = model.calibration.linear(state["head.weight"], state["head.bias"])
        state["head.weight"], state["head.bias"] = weight.contiguous(), bias.contiguous()
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _save_tokenizer(model.tokenizer, folder, max_length=model.cfg.max_length)
    for path in folder.iterdir():  # readable by others, as a plain write would leave them
        path.chmod(0o644)


def _save_tokenizer(tokenizer, folder: Path, *, max_length: int) -> None:
    """The tokenizer files, saying the length the model was trained at, without this machine's loading flags."""
    tokenizer.save_pretrained(folder)
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["model_max_length"] = int(max_length)
    for key in ("local_files_only", "is_local", "name_or_path", "_commit_hash"):
        config.pop(key, None)
    path.write_text(json.dumps(config, indent=2) + "\n")
