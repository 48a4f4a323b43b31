"""Compression on a tiny random encoder: every method is measured, pruning really prunes, exports round-trip."""

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from emolab.compression import CompressOptions, compress
from emolab.compression.measure import TABLE_COLUMNS
from emolab.compression.pruning import (make_permanent, mask_unstructured, prunable_weights, prune_channels,
                                        prune_heads_and_neurons)
from emolab.config import config_from_dict
from emolab.errors import EmolabError
from emolab.export import export_run
from emolab.models import load_model
from emolab.pipeline import run
from tests.conftest import TINY_ENCODER, make_texts

TEXT_METHODS = ("fp16", "bf16", "prune-unstructured", "prune-structured", "dynamic-int8", "onnx", "onnx-int8",
                "onnx-int8-dynamic", "distill")
FAST = dict(sparsities=(0.3, 0.6), max_train_steps=3, timing_examples=4, timing_rounds=1, half_eval_examples=20,
            importance_batches=2, distill_epochs=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compress")
    texts, ys = make_texts(300)
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(root / "mine.csv", index=False)
    cfg = {"data": {"name": "csv", "path": str(root / "mine.csv"), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "pooling": "mean", "max_length": 32},
           "train": {"epochs": 2, "batch_size": 16, "lr": 2e-3},
           "eval": {"timing": False, "batch_size": 16, "report": False},
           "output": {"dir": str(root / "runs"), "name": "tiny"}, "seed": 7}
    return run(config_from_dict(cfg), say=lambda _m: None)


@pytest.fixture(scope="module")
def compressed(tiny_run) -> list[dict]:
    compress(tiny_run, CompressOptions(methods=TEXT_METHODS, tolerance=0.5, **FAST), say=lambda _m: None)
    return json.loads((tiny_run / "compression" / "results.json").read_text())


def _row(rows, prefix):
    return next(r for r in rows if r["method"].startswith(prefix))


def test_every_method_gives_an_evaluated_row_with_every_table_column(tiny_run, compressed):
    names = [r["method"] for r in compressed]
    assert names[0] == "fp32"
    for m in TEXT_METHODS:
        assert any(n.startswith(m) for n in names), m
    for r in compressed:
        assert set(TABLE_COLUMNS) <= set(r), r["method"]
        assert 0 <= r["accuracy"] <= 1 and r["latency_p50_ms"] > 0 and r["throughput_b32"] > 0
        assert r["file_bytes"] > r["file_bytes_gzip"] > 0 or r["method"].startswith("onnx-int8")
    base = compressed[0]
    assert base["delta_accuracy"] == 0 and base["flips"] == 0 and base["speedup_b1"] == pytest.approx(1)
    assert _row(compressed, "fp16")["n_eval"] == 20
    # batch independence, measured: static int8 and fp32 batch, the dynamic int8 kinds run one text at a time
    for method in ("fp32", "onnx", "onnx-int8"):
        row = next(r for r in compressed if r["method"] == method)
        assert row["batching"] == "batched" and row["batch_drift"] <= 1e-6, row
    for method in ("dynamic-int8", "onnx-int8-dynamic"):
        assert next(r for r in compressed if r["method"] == method)["batching"] == "one at a time"
    out = tiny_run / "compression"
    for name in ("results.md", "sweep.json", "pareto.png", "sparsity_fp32.png", "sparsity_fp16.png"):
        assert (out / name).is_file(), name
    md = (out / "results.md").read_text()
    assert "changes neither the dense file size nor the latency" in md
    assert "| onnx-int8 | int8 |" in md and "one at a time" in md
    sweep = json.loads((out / "sweep.json").read_text())
    assert {(s["scope"], s["precision"]) for s in sweep} == {(a, b) for a in ("global", "layer") for b in ("fp32", "fp16")}


def test_unstructured_pruning_zeros_weights_but_not_the_dense_file(tiny_run, compressed):
    base, pruned = compressed[0], _row(compressed, "prune-unstructured-global")
    assert pruned["details"]["sparsity_of_pruned_weights"] == pytest.approx(0.6, abs=0.01)
    prunable = sum(m.weight.numel() for m, _ in prunable_weights(load_model(tiny_run).module))
    assert base["params_nonzero"] - pruned["params_nonzero"] == pytest.approx(0.6 * prunable, abs=2)
    assert pruned["params_total"] == base["params_total"] and pruned["file_bytes"] == base["file_bytes"]
    assert pruned["file_bytes_gzip"] < base["file_bytes_gzip"]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_requested_sparsity_is_reached(tiny_run, scope):
    module = copy.deepcopy(load_model(tiny_run).module)
    weights = prunable_weights(module)
    mask_unstructured(weights, 0.7, scope)
    make_permanent(weights)
    shares = [float((m.weight == 0).float().mean()) for m, _ in weights]
    total = sum(int((m.weight == 0).sum()) for m, _ in weights) / sum(m.weight.numel() for m, _ in weights)
    assert total == pytest.approx(0.7, abs=0.005)
    if scope == "layer":
        assert all(s == pytest.approx(0.7, abs=0.01) for s in shares)
    assert not any(n.endswith("_orig") for n, _ in module.named_parameters())


def test_structured_pruning_shrinks_the_model_and_loads_back(tiny_run, compressed):
    base, pruned = compressed[0], _row(compressed, "prune-structured")
    assert pruned["params_total"] < base["params_total"] and pruned["file_bytes"] < base["file_bytes"]
    assert pruned["details"]["kept"] == {"heads": [1, 1], "ffn": [32, 32]}
    folder = tiny_run / "compression" / "models" / "prune-structured"
    model = load_model(folder)
    layer = model.module.encoder.encoder.layer[0]
    assert layer.attention.self.query.out_features == 16 and layer.intermediate.dense.out_features == 32
    assert sum(p.numel() for p in model.module.parameters()) == pruned["params_total"]
    texts = ["i feel happy today", "so scared now", "i feel furious"]
    again = load_model(folder).predict_proba(texts)
    assert np.allclose(model.predict_proba(texts), again) and np.allclose(again.sum(1), 1)


def test_pruned_heads_compute_what_the_masked_full_model_computes(tiny_run):
    """Cutting heads out of the matrices equals zeroing their weights in the full model."""
    model = load_model(tiny_run)
    full, cut = copy.deepcopy(model.module), copy.deepcopy(model.module)
    scores = [torch.tensor([0.0, 1.0])] * 2  # drop head 0 in both layers
    neurons = [torch.arange(64, dtype=torch.float)] * 2  # drop the first 32 neurons
    prune_heads_and_neurons(cut, scores, neurons, head_fraction=0.5, ffn_fraction=0.5)
    with torch.no_grad():
        for layer in full.encoder.encoder.layer:
            layer.attention.output.dense.weight[:, :16] = 0
            layer.output.dense.weight[:, :32] = 0
    ids = torch.tensor([[101, 2000, 2001, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    assert torch.allclose(full(ids, mask), cut(ids, mask), atol=1e-5)


def test_distilled_student_has_half_the_layers(tiny_run, compressed):
    student = _row(compressed, "distill")
    assert student["details"]["layers_kept"] == [1]
    assert student["params_total"] < compressed[0]["params_total"]
    model = load_model(tiny_run / "compression" / "models" / "distill")
    assert len(model.module.encoder.encoder.layer) == 1


def test_onnx_export_round_trip_matches_pytorch(tiny_run, tmp_path):
    texts = ["i feel happy today", "so scared right now", "i feel furious and really mad today"]
    reference = load_model(tiny_run).predict_proba(texts)
    fp32 = export_run(tiny_run, out=tmp_path / "onnx", say=lambda _m: None)
    assert np.allclose(load_model(fp32).predict_proba(texts, batch_size=2), reference, atol=1e-5)
    int8 = export_run(tiny_run, int8=True, out=tmp_path / "int8", say=lambda _m: None)
    deployed = load_model(int8)
    assert np.abs(deployed.predict_proba(texts) - reference).max() < 0.05
    # worker threads must not spin after a run: spinning slowed the next PyTorch call 2.5x in timing
    options = deployed.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(EmolabError, match="exists"):
        export_run(tiny_run, out=tmp_path / "onnx", say=lambda _m: None)


def test_an_int8_export_prints_no_onnx_runtime_hints(tiny_run, tmp_path, caplog):
    """ONNX Runtime's quantizer logs its hints on the root logger, which prints them as `WARNING:root:...`."""
    import logging

    from emolab.compression.quantize import export_onnx

    # dynamic int8 (onnx-int8-dynamic): ONNX Runtime's quantize_dynamic hints at pre-processing the graph
    export_onnx(load_model(tiny_run), tmp_path / "int8", int8=True, dynamic=True)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "root"]


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    from emolab.cli import main

    monkeypatch.setattr(sys, "argv", ["emolab", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_export_then_predict_and_clean_errors(tiny_run, compressed, tmp_path, monkeypatch, capsys):
    def emolab(*args) -> tuple[int, str, str]:
        return _cli(monkeypatch, capsys, *args)

    deploy = tmp_path / "deploy"
    code, out, err = emolab("export", tiny_run, "--format", "onnx", "--int8", "--out", deploy)
    assert code == 0, err
    code, out, err = emolab("predict", deploy, "i feel glad today")
    assert code == 0 and "i feel glad today" in out, err
    code, out, err = emolab("compress", tiny_run, "--methods", "fp16,prune-magic")
    assert code == 2 and "unknown compression method 'prune-magic'" in err
    assert "prune-structured" in err and "Traceback" not in err
    code, out, err = emolab("compress", tiny_run, "--methods", "fp16")
    assert code == 2 and "compression exists" in err and "--overwrite" in err
    code, out, err = emolab("export", tiny_run, "--format", "tflite")
    assert code == 2 and "unknown export format 'tflite'" in err


def test_method_that_does_not_fit_the_model_kind_is_refused(tiny_run):
    with pytest.raises(EmolabError, match="does not apply to text models"):
        compress(tiny_run, CompressOptions(methods=("prune-channels",)), overwrite=True, say=lambda _m: None)


def test_bad_options_are_reported_together():
    with pytest.raises(EmolabError) as err:
        CompressOptions(tolerance=2.0, sparsities=(0.5, 1.5), head_fraction=1.0)
    assert "tolerance" in str(err.value) and "sparsities" in str(err.value) and "head_fraction" in str(err.value)


def test_channel_pruning_shrinks_a_cnn():
    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
            self.head = nn.Linear(16, 7)

        def forward(self, pixels):
            return self.head(self.features(pixels).flatten(1))

    torch.manual_seed(0)
    cnn = TinyCNN().eval()
    counts = prune_channels(cnn, {"pixels": torch.zeros(1, 1, 48, 48)}, ratio=0.5)
    assert counts["params_after"] < 0.5 * counts["params_before"]
    assert cnn.features[0].out_channels == 4 and cnn.features[3].out_channels == 8
    assert cnn(pixels=torch.rand(2, 1, 48, 48)).shape == (2, 7)


def test_report_shows_the_compression_table(tiny_run, compressed):
    from emolab.report.data import gather
    from emolab.report.render import render_markdown

    md = render_markdown(gather(tiny_run), tiny_run)
    assert "## Compression" in md and "| prune-structured |" in md and "compression/pareto.png" in md


def _fer_csv(folder: Path, n: int) -> None:
    """A tiny FER2013 file: 48x48 noise whose class shows as a bright square in one of seven places."""
    rng = np.random.default_rng(1)
    usage = ["Training"] * 6 + ["PublicTest", "PrivateTest"]
    rows = ["emotion,pixels,Usage"]
    for i in range(n):
        img = rng.integers(0, 80, size=(48, 48))
        y = i % 7
        img[(y // 3) * 16:(y // 3) * 16 + 12, (y % 3) * 16:(y % 3) * 16 + 12] = 240
        rows.append(f"{y},{' '.join(map(str, img.ravel()))},{usage[i % len(usage)]}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fer2013.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def face_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    _fer_csv(root / "fer", 140)
    cfg = {"data": {"name": "fer2013", "path": str(root / "fer")},
           "model": {"name": "cnn-small", "width": 8, "hidden_size": 32},
           "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3}, "eval": {"timing": False, "report": False, "tta": "flip"},
           "output": {"dir": str(root / "runs"), "name": "faces"}, "seed": 3}
    return run(config_from_dict(cfg), say=lambda _m: None)


def test_compress_runs_on_a_face_cnn(face_run):
    """Channel pruning, int8 (PyTorch dynamic, ONNX Runtime static) and the sparsity sweep on a tiny FER2013 CNN."""
    methods = ("prune-channels", "dynamic-int8", "onnx-int8", "prune-unstructured")
    compress(face_run, CompressOptions(methods=methods, tolerance=0.99, sparsities=(0.5,), max_train_steps=2,
                                       timing_examples=4, timing_rounds=1, half_eval_examples=10), say=lambda _m: None)
    rows = {r["method"]: r for r in json.loads((face_run / "compression" / "results.json").read_text())}
    assert rows["prune-channels"]["params_total"] < 0.5 * rows["fp32"]["params_total"]
    assert rows["dynamic-int8"]["file_bytes"] < rows["fp32"]["file_bytes"]
    assert rows["onnx-int8"]["file_bytes"] < 0.5 * rows["fp32"]["file_bytes"]  # int8 convs, not only the head
    assert rows["prune-unstructured-global@50%"]["params_nonzero"] < rows["fp32"]["params_nonzero"]
    # the channel-pruned CNN is saved and loads back at its new, narrower shapes, predicting the same
    faces = np.random.default_rng(0).integers(0, 255, size=(6, 48, 48), dtype=np.uint8)
    folder = face_run / "compression" / "models" / "prune-channels"
    pruned = load_model(folder)
    assert pruned.num_parameters() == rows["prune-channels"]["params_total"]
    assert pruned.predict_proba(faces).shape == (6, 7)
    onnx_int8 = load_model(face_run / "compression" / "models" / "onnx-int8")
    assert onnx_int8.tta == "flip" and onnx_int8.predict_proba(faces).shape == (6, 7)
    with pytest.raises(EmolabError, match="does not apply to image models"):
        compress(face_run, CompressOptions(methods=("distill",)), overwrite=True, say=lambda _m: None)


def test_face_cnn_exports_to_onnx_and_predicts_images(face_run, tmp_path, monkeypatch, capsys):
    from PIL import Image

    faces = np.random.default_rng(1).integers(0, 255, size=(5, 48, 48), dtype=np.uint8)
    reference = load_model(face_run).predict_proba(faces)  # flip TTA, as the run was evaluated
    fp32 = export_run(face_run, out=tmp_path / "fp32", say=lambda _m: None)
    assert np.allclose(load_model(fp32).predict_proba(faces, batch_size=2), reference, atol=1e-5)
    int8 = export_run(face_run, int8=True, out=tmp_path / "int8", say=lambda _m: None)
    assert np.abs(load_model(int8).predict_proba(faces) - reference).max() < 0.1
    assert (int8 / "model.onnx").stat().st_size < 0.5 * (fp32 / "model.onnx").stat().st_size
    Image.fromarray(faces[0]).save(tmp_path / "face.png")
    code, out, err = _cli(monkeypatch, capsys, "predict", int8, tmp_path / "face.png")
    assert code == 0 and "face.png" in out, err
    assert any(name in out for name in load_model(int8).labels.names), out
