"""Batch independence: a text scored alone and inside batches of varied-length texts (padded to the batch's
longest) gets the same scores from every exported and compressed model kind, or the kind refuses to batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from emolab.export import export_run
from emolab.compression.quantize import dynamic_int8, export_onnx
from emolab.config import config_from_dict
from emolab.models import load_model
from emolab.models.onnx import OnnxClassifier
from emolab.pipeline import run
from tests.conftest import TINY_ENCODER, make_texts

# Float rounding only: the int8 parts are exact integer arithmetic on fixed scales; what can differ with the
# batch is the order of float sums (softmax over a padded width, GEMM blocking), ~1e-8 on probabilities.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batching")
    texts, ys = make_texts(150)
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(root / "mine.csv", index=False)
    cfg = {"data": {"name": "csv", "path": str(root / "mine.csv"), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "pooling": "mean", "max_length": 48},
           "train": {"epochs": 1, "batch_size": 16, "lr": 2e-3},
           "eval": {"timing": False, "batch_size": 16, "report": False},
           "output": {"dir": str(root / "runs"), "name": "tiny"}, "seed": 3}
    return run(config_from_dict(cfg), say=lambda _m: None)


def _texts(n: int = 32) -> list[str]:
    """Texts of 1 to ~40 words, so batches mix short texts with long ones (heavy padding)."""
    rng = np.random.default_rng(0)
    words = "i feel so very happy scared furious glad today really quite now nervous mad the a".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 40)))) for _ in range(n)]


@pytest.fixture(scope="module")
def models(text_run, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("exports")
    torch_model = load_model(text_run)
    return {"fp32 PyTorch": torch_model,
            "PyTorch dynamic int8": dynamic_int8(torch_model),
            "fp32 ONNX": load_model(export_run(text_run, out=out / "onnx", say=lambda _m: None)),
            "static int8 ONNX": load_model(export_run(text_run, int8=True, out=out / "int8", say=lambda _m: None)),
            "dynamic int8 ONNX": export_onnx(torch_model, out / "dynamic", int8=True, dynamic=True)}


@pytest.mark.parametrize("kind", ["fp32 PyTorch", "PyTorch dynamic int8", "fp32 ONNX", "static int8 ONNX",
                                  "dynamic int8 ONNX"])
def test_a_text_gets_the_same_scores_alone_and_inside_batches(models, kind):
    model = models[kind]
    texts = _texts()
    alone = np.concatenate([model.predict_proba([t], batch_size=1) for t in texts])
    for size in (8, 32):
        batched = model.predict_proba(texts, batch_size=size)
        assert np.abs(batched - alone).max() <= TOLERANCE, (kind, size)
    # one short text among long batch-mates (padded far beyond its length), at every position of a batch of 8
    short = "i feel glad"
    longest = sorted(texts, key=len)[-7:]
    ref = model.predict_proba([short], batch_size=1)[0]
    for pos in range(8):
        batch = longest[:pos] + [short] + longest[pos:]
        assert np.abs(model.predict_proba(batch, batch_size=8)[pos] - ref).max() <= TOLERANCE, (kind, pos)


def test_static_int8_batches_and_dynamic_int8_runs_one_text_at_a_time(models):
    static, dynamic = models["static int8 ONNX"], models["dynamic int8 ONNX"]
    assert static.info["activations"] == "static" and not static.per_example
    assert dynamic.info["activations"] == "dynamic" and dynamic.per_example
    assert models["PyTorch dynamic int8"].per_example and not models["fp32 PyTorch"].per_example
    # int8 weights for every linear layer of the encoder (6 per layer), not only the head
    graph = onnx.load(str(static.folder / "model.onnx")).graph
    int8_weights = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 6 * TINY_ENCODER["num_hidden_layers"]
    assert np.abs(static.predict_proba(_texts()) - models["fp32 PyTorch"].predict_proba(_texts())).max() < 0.05


def test_the_dynamic_graph_batched_anyway_does_depend_on_its_batch_mates(models):
    """Why dynamic int8 runs one text at a time: forced to batch, its scores move with the batch (the test
    above would fail on it)."""

    class BatchedAnyway(OnnxClassifier):
        per_example = False

    dynamic = models["dynamic int8 ONNX"]
    forced = BatchedAnyway.load(dynamic.folder)
    texts = _texts()
    alone = np.concatenate([forced.predict_proba([t], batch_size=1) for t in texts])
    assert np.abs(forced.predict_proba(texts, batch_size=32) - alone).max() > 10 * TOLERANCE


def test_an_older_dynamic_export_without_the_activations_field_still_runs_one_text_at_a_time(models, tmp_path):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(models["dynamic int8 ONNX"].folder, old)
    card = json.loads((old / "emolab_model.json").read_text())
    del card["onnx"]["activations"]  # exports written before the field existed name the kind in "quantization"
    (old / "emolab_model.json").write_text(json.dumps(card))
    assert OnnxClassifier.load(old).per_example


def test_an_int8_export_to_a_relative_folder_works(text_run, tmp_path, monkeypatch):
    """`emolab export runs/NAME --int8` from the project root: the output folder is relative while the
    quantizer works inside a temporary working folder (it once looked for the graph under a doubled path)."""
    monkeypatch.chdir(tmp_path)
    folder = export_run(text_run, int8=True, out=Path("exports") / "int8", say=lambda _m: None)
    assert (tmp_path / "exports" / "int8" / "model.onnx").is_file()
    assert load_model(folder).predict_proba(["i feel glad"]).shape[0] == 1
