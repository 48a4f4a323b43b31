"""Export a text run as a Hugging Face model folder that the ecosystem's own loaders read:
``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)`` and
``transformers.pipeline("text-classification", model=DIR, trust_remote_code=True)``.

The folder holds ``config.json`` (the encoder's config, the pooling head, ``id2label`` / ``label2id`` and
an ``auto_map`` naming the two code files), ``configuration_emolab.py`` and ``modeling_emolab.py`` (the
pooling head's code is copied from :mod:`emolab.models.text`, so it is the same code), the weights as
``model.safetensors`` under emolab's own names, and the tokenizer files."""

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
    shutil.copy2(FILES / "configuration_emolab.py", folder / "configuration_emolab.py")
    (folder / "modeling_emolab.py").write_text(modeling_source())
    import transformers

    config = {
        "model_type": "emolab", "architectures": ["EmolabForSequenceClassification"],
        "auto_map": {"AutoConfig": "configuration_emolab.EmolabConfig",
                     "AutoModelForSequenceClassification": "modeling_emolab.EmolabForSequenceClassification"},
        "encoder": encoder, "pooling": model.cfg.pooling, "classifier_dropout": model.cfg.dropout,
        "id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)},
        "problem_type": "multi_label_classification" if model.labels.multi_label else "single_label_classification",
        "transformers_version": transformers.__version__,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.module.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model.tokenizer.save_pretrained(folder)
