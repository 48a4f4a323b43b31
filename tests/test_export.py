"""Exports the ecosystem's own tools load: a Hugging Face model folder (AutoModel and the pipeline, with
trust_remote_code) and an ONNX folder laid out as ONNX Runtime / Optimum users expect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolab.export import export_run
from emolab.config import config_from_dict
from emolab.errors import EmolabError
from emolab.models import load_model
from emolab.pipeline import run
from tests.conftest import TINY_ENCODER, make_texts


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    texts, ys = make_texts(150)
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(root / "mine.csv", index=False)
    cfg = {"data": {"name": "csv", "path": str(root / "mine.csv"), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "pooling": "attention",
                     "max_length": 32},
           "train": {"epochs": 1, "batch_size": 16, "lr": 2e-3},
           "eval": {"timing": False, "batch_size": 16, "report": False},
           "output": {"dir": str(root / "runs"), "name": "tiny"}, "seed": 5}
    return run(config_from_dict(cfg), say=lambda _m: None)


TEXTS = ["i feel furious today", "so scared and nervous", "i feel glad really", "a b", "what a day " * 20]


def test_the_hf_export_loads_in_automodel_and_the_pipeline_with_emolab_scores(text_run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out = export_run(text_run, format="hf", say=lambda _m: None)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "anger", "1": "fear", "2": "joy"} and "AutoModelForSequenceClassification" \
        in config["auto_map"]
    ours = load_model(text_run).predict_proba(TEXTS)
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")).logits
    assert np.allclose(torch.softmax(logits, -1).numpy(), ours, atol=1e-4)
    # no truncation arguments: the export's pipeline truncates at the trained length, as emolab does
    long = ["i feel glad " * 40, "so scared " * 400]  # past the trained 32 tokens, and past the encoder's positions
    classify = pipeline("text-classification", model=str(out), trust_remote_code=True, top_k=None)
    ours = load_model(text_run).predict_proba(TEXTS + long)
    for text, row, p in zip(TEXTS + long, classify(TEXTS + long), ours):
        scores = {x["label"]: x["score"] for x in row}
        assert max(scores, key=scores.get) == ["anger", "fear", "joy"][int(p.argmax())], text
        assert [scores[n] for n in ("anger", "fear", "joy")] == pytest.approx(p, abs=1e-4)
    assert tokenizer.model_max_length == 32
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert not {"local_files_only", "is_local"} & set(tok_config)
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in out.iterdir()), "files readable by others"


def test_the_hf_export_tokenizer_loads_without_a_prompt(text_run, tmp_path):
    import subprocess
    import sys

    out = export_run(text_run, format="hf", out=tmp_path / "hf", say=lambda _m: None)
    code = f"from transformers import AutoTokenizer; print(AutoTokenizer.from_pretrained({str(out)!r}).model_max_length)"
    r = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "32", r.stderr


def test_the_onnx_export_has_config_and_tokenizer_at_its_root(text_run):
    import onnxruntime as ort
    from transformers import AutoConfig, AutoTokenizer

    out = export_run(text_run, format="onnx", say=lambda _m: None)
    assert {"model.onnx", "config.json", "tokenizer.json", "emolab_model.json"} <= {p.name for p in out.iterdir()}
    assert AutoConfig.from_pretrained(out).id2label == {0: "anger", 1: "fear", 2: "joy"}
    config = json.loads((out / "config.json").read_text())
    assert not config.get("architectures") and "pooling + linear head" in config["emolab_graph"]  # not "BertModel"
    enc = AutoTokenizer.from_pretrained(out)(TEXTS[:2], padding=True, return_tensors="np")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}
    logits = session.run(None, feed)[0]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(probs, load_model(text_run).predict_proba(TEXTS[:2]), atol=1e-4)
    assert np.allclose(load_model(out).predict_proba(TEXTS), load_model(text_run).predict_proba(TEXTS), atol=1e-4)


@pytest.mark.parametrize("fmt", ["hf", "onnx"])
def test_every_export_carries_a_model_card_with_the_run_metrics(text_run, fmt, tmp_path):
    import json

    from huggingface_hub import ModelCard

    out = export_run(text_run, format=fmt, out=tmp_path / fmt, say=lambda _m: None)
    card = ModelCard.load(out / "README.md")
    metrics = json.loads((text_run / "metrics.json").read_text())
    accuracy = next(r for r in card.data.eval_results if r.metric_type == "accuracy")
    assert accuracy.metric_value == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert card.data.library_name == ("transformers" if fmt == "hf" else "emolab")
    assert ("pipeline(" in card.text) == (fmt == "hf")


def test_hf_export_refuses_what_it_cannot_write(text_run):
    with pytest.raises(EmolabError, match="--int8 applies to --format onnx"):
        export_run(text_run, format="hf", int8=True, say=lambda _m: None)


def test_serving_an_onnx_export_loads_no_torch(text_run, tmp_path):
    import subprocess
    import sys

    out = export_run(text_run, format="onnx", out=tmp_path / "onnx", say=lambda _m: None)
    code = f"""
import sys
from emolab.serving.models import ServedModel
served = ServedModel.load({str(out)!r})
print(served.model.predict_proba(["i feel glad today"]).shape, "torch" in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "False", r.stdout


def test_serve_names_an_hf_export_folder_for_what_it_is(text_run, tmp_path):
    from emolab.serving.models import ServedModel

    out = export_run(text_run, format="hf", out=tmp_path / "hf", say=lambda _m: None)
    with pytest.raises(EmolabError, match="--format hf"):
        ServedModel.load(str(out))
