"""Calibration: the fit (against a known temperature), the metrics (against scikit-learn and metrics.py), the run
command and its errors, and that every way scores leave emolab (load_model, Predictor, serving's thresholds, the
HF and ONNX exports) gives the calibrated scores while decisions stay the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from emolab import calibration as cal
from emolab.cli import main
from emolab.config import config_from_dict
from emolab.errors import EmolabError
from emolab.metrics import expected_calibration_error
from emolab.models import load_model
from emolab.pipeline import calibrate_run, run
from emolab.rundir import decision_thresholds, open_run
from tests.conftest import TINY_ENCODER, make_texts


def _overconfident(n=3000, k=4, temperature=3.0, seed=0):
    """Labels drawn from softmax(z) but reported as softmax(z * temperature): the true temperature is known."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    true = cal._softmax(z)
    y = np.array([rng.choice(k, p=p) for p in true])
    return y, cal._softmax(z * temperature)


def test_temperature_scaling_recovers_a_known_temperature_and_keeps_the_argmax():
    y, probs = _overconfident()
    fitted = cal.fit(y, probs, multi_label=False)
    assert fitted.temperature[0] == pytest.approx(3.0, rel=0.1)
    after = fitted.apply(probs)
    assert (after.argmax(1) == probs.argmax(1)).all()
    assert np.allclose(after.sum(1), 1.0)
    assert expected_calibration_error(after, y) < 0.5 * expected_calibration_error(probs, y)
    assert log_loss(y, after) < log_loss(y, probs)
    assert np.allclose(cal.Calibration("temperature", (1.0,)).apply(probs), probs, atol=1e-9)
    with_nan = np.vstack([probs[:2], np.full((1, 4), np.nan)])
    assert np.isnan(fitted.apply(with_nan)[2]).all() and not np.isnan(fitted.apply(with_nan)[:2]).any()


def test_metrics_match_scikit_learn_and_the_report_ece():
    y, probs = _overconfident(n=800, seed=1)
    after = cal.fit(y, probs, multi_label=False).apply(probs)
    m = cal.calibration_metrics(y, probs, after, multi_label=False, resamples=200, seed=0)
    assert m["ece"]["before"] == pytest.approx(expected_calibration_error(probs, y))
    assert m["ece"]["after"] == pytest.approx(expected_calibration_error(after, y))
    assert m["nll"]["before"] == pytest.approx(log_loss(y, probs, labels=range(4)), rel=1e-6)
    onehot = np.eye(4)[y]
    assert m["brier"]["after"] == pytest.approx(((after - onehot) ** 2).sum(1).mean())
    for key in ("ece", "nll", "brier"):
        lo, hi = m[key]["before_interval"]
        assert lo <= m[key]["before"] <= hi
        lo, hi = m[key]["change_interval"]
        assert lo <= m[key]["change"] <= hi
    assert m["ece"]["change_interval"][1] < 0  # a real improvement: the whole interval below zero
    assert m["accuracy"]["before"] == m["accuracy"]["after"]


def test_multi_label_calibration_fits_per_label_and_maps_the_thresholds():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, size=(2000, 3))
    y = (rng.random((2000, 3)) < 1 / (1 + np.exp(-z))).astype(int)
    probs = 1 / (1 + np.exp(-z * np.array([3.0, 1.0, 0.5])))  # over-, well- and under-confident labels
    for method in ("temperature", "platt"):
        fitted = cal.fit(y, probs, multi_label=True, method=method)
        assert len(fitted.temperature) == 3
        if method == "temperature":
            assert fitted.temperature == pytest.approx((3.0, 1.0, 0.5), rel=0.15)
        after = fitted.apply(probs)
        per_label = [log_loss(y[:, k], after[:, k]) for k in range(3)]
        assert np.mean(per_label) < np.mean([log_loss(y[:, k], probs[:, k]) for k in range(3)])
        m = cal.calibration_metrics(y, probs, after, multi_label=True, resamples=0)
        assert m["nll"]["after"] == pytest.approx(np.mean(per_label), rel=1e-6)
        raw_t = np.array([0.3, 0.5, 0.7])
        assert ((probs >= raw_t) == (after >= fitted.thresholds(raw_t))).all()  # the same decisions
    with pytest.raises(EmolabError, match="multi-label"):
        cal.fit(y[:, 0], probs, multi_label=False, method="platt")


def test_calibration_is_folded_into_a_linear_head_exactly():
    torch = pytest.importorskip("torch")
    c = cal.Calibration("temperature", (1.5, 2.0, 0.7), (0.1, -0.2, 0.0), multi_label=True)
    layer = torch.nn.Linear(5, 3)
    x = torch.randn(4, 5)
    w, b = c.linear(layer.weight.detach(), layer.bias.detach())
    expected = c.apply(torch.sigmoid(layer(x)).detach().double().numpy())
    assert np.allclose(torch.sigmoid(x @ w.T + b).numpy(), expected, atol=1e-5)
    assert np.allclose(c.torch_head(layer)(x).detach().numpy(), (x @ w.T + b).numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """A tiny transformer run calibrated as part of the run (eval.calibrate)."""
    root = tmp_path_factory.mktemp("calibration")
    texts, ys = make_texts(150)
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(root / "mine.csv", index=False)
    cfg = {"data": {"name": "csv", "path": str(root / "mine.csv"), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "max_length": 32},
           "train": {"epochs": 1, "batch_size": 16, "lr": 2e-3},
           "eval": {"timing": False, "batch_size": 16, "report": False, "calibrate": "temperature"},
           "output": {"dir": str(root / "runs"), "name": "tiny"}, "seed": 5}
    return run(config_from_dict(cfg), say=lambda _m: None)


TEXTS = ["i feel furious today", "so scared and nervous", "i feel glad really", "a b"]


def test_a_calibrated_run_scores_calibrated_everywhere(text_run, tmp_path):
    card = json.loads((text_run / "model" / "emolab_model.json").read_text())
    fitted = cal.Calibration.from_dict(card["calibration"])
    assert fitted.method == "temperature" and fitted.temperature[0] != 1.0
    result = json.loads((text_run / "calibration" / "calibration.json").read_text())
    assert {"ece", "nll", "brier", "reliability"} <= set(result["test"]) and (text_run / "calibration" /
                                                                             "reliability.png").is_file()
    # the run's saved predictions stay as trained; the loaded model answers calibrated
    model = load_model(text_run)
    calibrated = model.predict_proba(TEXTS)
    model.calibration = None
    raw = model.predict_proba(TEXTS)
    assert np.allclose(calibrated, fitted.apply(raw), atol=1e-9) and not np.allclose(calibrated, raw, atol=1e-3)
    assert (calibrated.argmax(1) == raw.argmax(1)).all()
    from emolab.scoring import Predictor

    frame = Predictor(text_run)(TEXTS)
    assert np.allclose(frame[[f"p_{n}" for n in model.labels.names]].to_numpy(), calibrated, atol=1e-5)


def test_the_exports_give_the_calibrated_scores(text_run, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from emolab.export import export_run

    ours = load_model(text_run).predict_proba(TEXTS)
    hf = export_run(text_run, format="hf", out=tmp_path / "hf", say=lambda _m: None)
    model = AutoModelForSequenceClassification.from_pretrained(hf, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf)
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")).logits
    assert np.allclose(torch.softmax(logits, -1).numpy(), ours, atol=1e-4)
    onnx = export_run(text_run, format="onnx", out=tmp_path / "onnx", say=lambda _m: None)
    exported = load_model(onnx)
    assert exported.calibration.in_graph  # in the graph: ONNX Runtime users get it too, emolab applies it once
    assert np.allclose(exported.predict_proba(TEXTS), ours, atol=1e-4)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx / "model.onnx"), providers=["CPUExecutionProvider"])
    enc = exported.tokenizer(TEXTS[:1], return_tensors="np", return_token_type_ids=True)
    logits = session.run(None, {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()})[0]
    assert np.allclose(cal._softmax(logits.astype(np.float64)), ours[:1], atol=1e-4)


def test_calibrate_command_refits_only_when_asked_and_says_what_is_wrong(text_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", str(text_run)])
    assert exit_.value.code == 2 and "calibrated already" in " ".join(capsys.readouterr().err.split())
    before = json.loads((text_run / "model" / "emolab_model.json").read_text())["calibration"]
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", str(text_run), "--overwrite"])
    assert exit_.value.code == 0 and "ECE" in capsys.readouterr().out
    assert json.loads((text_run / "model" / "emolab_model.json").read_text())["calibration"] == before  # same fit
    for args, message in ((["--method", "platt"], "multi-label"), (["--method", "isotonic"], "unknown calibration")):
        with pytest.raises(SystemExit) as exit_:
            main(["calibrate", str(text_run), "--overwrite", *args])
        assert exit_.value.code == 2 and message in " ".join(capsys.readouterr().err.split())


def test_calibrate_needs_validation_predictions(tmp_path, tiny_csv, capsys):
    raw = {"data": {"name": "csv", "path": str(tiny_csv), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "tfidf"}, "eval": {"timing": False, "report": False, "splits": ["test"]},
           "output": {"dir": str(tmp_path / "runs"), "name": "tfidf"}}
    done = run(config_from_dict(raw), say=lambda _m: None)
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", str(done)])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 2 and "no validation predictions" in err and "Traceback" not in err
    with pytest.raises(EmolabError, match="eval.calibrate.*validation"):
        config_from_dict({**raw, "eval": {**raw["eval"], "calibrate": "temperature"}})


def test_a_multi_label_run_decides_the_same_after_calibration(tmp_path, shared_data):
    raw = {"data": {"name": "goemotions", "taxonomy": "ekman", "multi_label_policy": "multi_label",
                    "max_train_examples": 1500, "max_eval_examples": 400},
           "model": {"name": "tfidf"}, "eval": {"timing": False, "report": False},
           "output": {"dir": str(tmp_path / "runs"), "name": "go"}, "seed": 1}
    done = run(config_from_dict(raw), say=lambda _m: None)
    texts = open_run(done).predictions("test").inputs[:200]
    model = load_model(done)
    raw_probs = model.predict_proba(texts)
    raw_decisions = model.labels.decide(raw_probs, decision_thresholds(done, model.labels.names))
    calibrate_run(done, method="platt", say=lambda _m: None)
    model = load_model(done)
    assert model.calibration.method == "platt" and len(model.calibration.temperature) == len(model.labels.names)
    probs = model.predict_proba(texts)
    assert not np.allclose(probs, raw_probs, atol=1e-3)
    assert model.labels.decide(probs, decision_thresholds(done, model.labels.names, calibrated=True)) == raw_decisions
    from emolab.scoring import Predictor

    predictor = Predictor(done)
    assert np.allclose(predictor.thresholds, decision_thresholds(done, model.labels.names, calibrated=True))


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_a_calibrated_face_run_exports_to_onnx_with_the_same_scores(tmp_path, tta):
    from emolab.export import export_run
    from tests.test_compression import _fer_csv

    _fer_csv(tmp_path / "fer", 140)
    cfg = {"data": {"name": "fer2013", "path": str(tmp_path / "fer")},
           "model": {"name": "cnn-small", "width": 8, "hidden_size": 32},
           "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3},
           "eval": {"timing": False, "report": False, "tta": tta, "calibrate": "temperature"},
           "output": {"dir": str(tmp_path / "runs"), "name": "faces"}, "seed": 3}
    done = run(config_from_dict(cfg), say=lambda _m: None)
    faces = np.random.default_rng(0).integers(0, 255, size=(6, 48, 48), dtype=np.uint8)
    model = load_model(done)
    ours = model.predict_proba(faces)
    model.calibration = None
    assert not np.allclose(model.predict_proba(faces), ours, atol=1e-4)
    exported = load_model(export_run(done, format="onnx", out=tmp_path / "onnx", say=lambda _m: None))
    # one view: the graph divides the logits; averaged views: emolab calibrates after averaging, as the run does
    assert exported.calibration.in_graph == (tta == "none")
    assert np.allclose(exported.predict_proba(faces), ours, atol=1e-4)


def test_the_report_has_a_calibration_section(text_run):
    from emolab.report import write_report

    write_report(text_run, say=lambda _m: None)
    md = (text_run / "report.md").read_text()
    section = md.split("## Calibration", 1)[1].split("\n## ", 1)[0]
    result = json.loads((text_run / "calibration" / "calibration.json").read_text())
    assert f"{result['test']['ece']['after']:.4f}" in section and "| accuracy |" in section
    assert "calibration/reliability.png" in md
