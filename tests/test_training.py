"""Transformer classifiers and the training loop, on tiny randomly initialised encoders (no downloads)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from emolab.config import config_from_dict
from emolab.models.text import POOLINGS, create_pooling
from emolab.pipeline import evaluate_run, run
from emolab.training import train
from tests.conftest import TINY_ENCODER, crash_after_first_epoch


def tiny_config(tmp_path: Path, csv: Path, **train) -> dict:
    return {
        "data": {"name": "csv", "path": str(csv), "text_column": "sentence", "label_column": "emotion"},
        "model": {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "pooling": "mean",
                  "max_length": 32, "dropout": 0.1},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "warmup_ratio": 0.1, **train},
        "eval": {"timing": False, "batch_size": 16},
        "output": {"dir": str(tmp_path / "runs"), "name": "tiny"},
        "seed": 7,
    }


def quiet(_msg: str) -> None:
    pass


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_pooling_heads_ignore_padding(name):
    torch.manual_seed(0)
    pool = create_pooling(name, 8)
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = pool(hidden, mask)
    assert out.shape == (2, 8 * pool.out_factor)
    changed = hidden.clone()
    changed[0, 3:] = 100.0  # padded positions of the first example
    assert torch.allclose(pool(changed, mask)[0], out[0], atol=1e-6)


def test_unknown_pooling_lists_valid_names():
    from emolab.errors import EmolabError

    with pytest.raises(EmolabError, match="attention, cls, max, mean, mean-max"):
        create_pooling("sum", 8)


def test_group_by_length_is_the_text_models_own_key_and_the_old_train_key_means_the_same(tmp_path, tiny_csv):
    from emolab.data import load_dataset
    from emolab.models import create_model

    base = tiny_config(tmp_path, tiny_csv)
    for raw, grouped in ((base, True), ({**base, "model": {**base["model"], "group_by_length": False}}, False),
                         (tiny_config(tmp_path, tiny_csv, group_by_length=False), False)):  # the key's old place
        cfg = config_from_dict(raw)
        ds = load_dataset(cfg.data, cfg.seed)
        task = create_model(cfg.model, ds.labels, ds).task(ds, cfg)
        assert (task.train_lengths is not None) is grouped and task.val_lengths is not None


def test_two_step_seeded_run_has_golden_losses(tmp_path, tiny_csv):
    cfg = config_from_dict(tiny_config(tmp_path, tiny_csv, max_steps=2, group_by_length=False))
    out = run(cfg, say=quiet)
    steps = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    losses = [s["loss"] for s in steps]
    assert losses == pytest.approx([1.18481, 1.05274], abs=1e-3), losses
    assert all(s["grad_norm"] > 0 for s in steps) and steps[0]["lr"] > steps[1]["lr"]  # linear decay


def test_training_learns_and_history_has_every_metric(tmp_path, tiny_csv):
    cfg = config_from_dict(tiny_config(tmp_path, tiny_csv, epochs=4))
    out = run(cfg, say=quiet)
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4
    for key in ("train_loss", "train_accuracy", "train_macro_f1", "train_weighted_f1", "train_cross_entropy",
                "train_kl_divergence", "val_loss", "val_accuracy", "val_macro_f1", "val_weighted_f1",
                "val_cross_entropy", "val_kl_divergence", "lr", "grad_norm"):
        assert key in history[0], key
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.6  # 3 classes, chance is 0.33
    assert not (out / "checkpoints").exists()  # optimizer state is dropped from a finished run
    assert (out / "model" / "model.safetensors").is_file() and (out / "plots" / "learning_curves.png").is_file()
    assert (out / "plots" / "steps.png").is_file()


def test_resume_ends_with_the_same_weights(tmp_path, tiny_csv):
    base = tiny_config(tmp_path, tiny_csv, epochs=3)
    straight = run(config_from_dict({**base, "output": {"dir": str(tmp_path / "a"), "name": "r"}}), say=quiet)

    cfg = config_from_dict({**base, "output": {"dir": str(tmp_path / "b"), "name": "r"}})
    with pytest.raises(KeyboardInterrupt):
        run(cfg, say=crash_after_first_epoch)
    assert (tmp_path / "b" / "r.partial" / "checkpoints" / "last").is_dir()
    resumed = run(cfg, resume=True, say=quiet)
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = (straight / "history.jsonl").read_text().splitlines()
    hb = (resumed / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["val_loss"] for x in ha] == [json.loads(x)["val_loss"] for x in hb]


def test_saved_run_loads_back_offline_and_evaluates_in_half_precision(tmp_path, tiny_csv):
    from emolab.models import load_model

    out = run(config_from_dict(tiny_config(tmp_path, tiny_csv)), say=quiet)
    model = load_model(out)
    probs = model.predict_proba(["i feel furious today", "i feel glad now"])
    saved = np.load(out / "predictions_test.npz")
    test_texts = [row.split(",")[1] for row in (out / "predictions_test.csv").read_text().splitlines()[1:4]]
    assert np.allclose(model.predict_proba(test_texts), saved["probs"][:3], atol=1e-5)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1)
    fp32 = evaluate_run(out, "test", say=quiet)
    for precision in ("bf16", "fp16"):
        half = evaluate_run(out, "test", precision=precision, say=quiet)
        assert abs(half["accuracy"] - fp32["accuracy"]) <= 0.1
        assert (out / "evaluations" / f"test-{precision}.json").is_file()


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant", "plateau"])
def test_schedulers(tmp_path, tiny_csv, scheduler):
    cfg = config_from_dict(tiny_config(tmp_path, tiny_csv, scheduler=scheduler, epochs=2, warmup_ratio=0.2))
    out = run(cfg, say=quiet)
    lrs = [json.loads(x)["lr"] for x in (out / "steps.jsonl").read_text().splitlines()]
    peak = max(lrs)
    assert lrs[0] < peak <= 1e-3 + 1e-12  # warmup first
    if scheduler == "linear":
        assert lrs[-1] < 0.1 * peak
    if scheduler == "cosine":
        assert lrs[-1] < 0.1 * peak
    if scheduler == "constant":
        assert lrs[-1] == pytest.approx(1e-3)


@pytest.mark.parametrize("total,warmup", [(1, 0), (2, 0), (2, 1), (3, 0), (10, 2)])
def test_onecycle_survives_tiny_runs(total, warmup):  # OneCycleLR itself divides by zero on 2 steps
    from emolab.training import _Schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    schedule = _Schedule(opt, "onecycle", warmup, total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert all(0 < lr <= 0.1 + 1e-12 for lr in lrs) and (total < 3 or max(lrs) > lrs[0])


def test_early_stopping_and_options(tmp_path, tiny_csv):
    cfg = config_from_dict(tiny_config(tmp_path, tiny_csv, epochs=6, patience=1, lr=1e-9, class_weights=True,
                                       label_smoothing=0.1, grad_accum_steps=2, early_stopping_metric="loss"),
                           overrides=["model.freeze_embeddings=true", "model.freeze_layers=1",
                                      "model.pooling=attention"])
    out = run(cfg, say=quiet)
    history = (out / "history.jsonl").read_text().splitlines()
    assert len(history) < 6  # a learning rate of 1e-9 cannot keep improving the loss


def test_multi_label_head(tmp_path):
    from emolab.models import create_model
    from tests.conftest import multi_label_dataset

    ds = multi_label_dataset(60)
    texts, y = ds.split("train").inputs, ds.split("train").labels
    cfg = config_from_dict(tiny_config(tmp_path, Path("unused"), epochs=2))
    model = create_model(cfg.model, ds.labels)
    history = train(model, ds, cfg)
    assert "micro_f1" in history[-1].validation and "bce" in history[-1].validation
    probs = model.predict_proba(texts[:4])
    assert probs.shape == (4, 3) and not np.allclose(probs.sum(1), 1)  # sigmoid, not softmax


def test_sanity_check_overfits_twenty_examples(tmp_path, tiny_csv):
    from emolab.sanity import sanity_check

    cfg = config_from_dict(tiny_config(tmp_path, tiny_csv), overrides=["train.lr=3e-3"])
    result = sanity_check(cfg, n=20, epochs=30, say=quiet)
    assert result["passed"] and result["train_accuracy"] == 1.0 and result["examples"] == 20


def test_sanity_of_the_shipped_tfidf_svm_config_on_20_examples(shared_data):
    """`emolab sanity configs/emotion-tfidf.yaml --overfit 20`: its 20 examples hold classes seen once, which a
    3-fold calibration of the SVM cannot split."""
    from emolab.config import load_config
    from emolab.sanity import sanity_check

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "emotion-tfidf.yaml", [])
    assert cfg.model.classifier == "svm"
    result = sanity_check(cfg, n=20, say=quiet)
    assert result["passed"] and result["examples"] == 20


def test_sanity_check_fails_when_the_model_cannot_learn(tmp_path, tiny_csv):
    from emolab.sanity import sanity_check

    cfg = config_from_dict(tiny_config(tmp_path, tiny_csv), overrides=["train.lr=1e-9"])
    result = sanity_check(cfg, n=20, epochs=2, say=quiet)
    assert not result["passed"] and result["train_accuracy"] < 1.0


def test_matrix_run_of_pooling_heads_by_schedules_prints_the_leaderboard(tmp_path, tiny_csv):
    import subprocess
    import sys

    import yaml

    cfg = tiny_config(tmp_path, tiny_csv, epochs=1)
    cfg["output"] = {"dir": str(tmp_path / "runs"), "name": "grid"}
    cfg["eval"]["report"] = False
    cfg["matrix"] = {"model.pooling": ["cls", "mean", "attention"], "train.scheduler": ["linear", "cosine"]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "emolab.cli", "run", str(path)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    folder = tmp_path / "runs" / "grid"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(
        f"{p}-{s}" for p in ("cls", "mean", "attention") for s in ("linear", "cosine"))
    table = (folder / "leaderboard.md").read_text()
    assert table.count("| minilm-l6 |") == 6 and "| attention | cosine |" in table
    assert "test macro-F1" in r.stdout  # the leaderboard is printed


def test_matrix_values_must_be_lists(tmp_path, tiny_csv):
    from emolab.errors import ConfigError
    from emolab.matrix import cells

    raw = {**tiny_config(tmp_path, tiny_csv), "matrix": {"model.pooling": "mean", "model.dropout": [0.1, 7.0]}}
    with pytest.raises(ConfigError, match="expected a list of values"):
        cells(config_from_dict(raw), raw, "m.yaml")
    raw["matrix"]["model.pooling"] = ["mean"]
    with pytest.raises(ConfigError, match=r"matrix cell mean-7.0: model.dropout: must be in \[0, 1\)"):
        cells(config_from_dict(raw), raw, "m.yaml")


def test_class_weights_weigh_examples_not_the_label_smoothing_term():
    from emolab.config import RunConfig
    from emolab.training import TrainTask, _loss_fn

    labels = np.array([0] * 95 + [1] * 5)  # class 1 is rare: weight 10 against 0.53
    task = TrainTask(module=None, train_set=None, val_set=None, collate=None, label_names=("common", "rare"),
                     train_labels=labels)
    cfg = RunConfig()
    cfg.train.class_weights = True
    logits, y = torch.randn(8, 2), torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    w = torch.tensor([100 / (2 * 95), 100 / (2 * 5)])
    plain = _loss_fn(task, cfg, "cpu")
    # without smoothing: torch's weighted mean with sklearn's "balanced" weights
    assert torch.allclose(plain(logits, y), torch.nn.functional.cross_entropy(logits, y, weight=w))
    cfg.train.class_weights = "balanced"  # the same, by name
    assert torch.allclose(_loss_fn(task, cfg, "cpu")(logits, y), plain(logits, y))
    cfg.train.class_weights = "sqrt"  # square roots of the balanced weights: 4.36x apart instead of 19x
    tempered = torch.nn.functional.cross_entropy(logits, y, weight=w.sqrt())
    assert torch.allclose(_loss_fn(task, cfg, "cpu")(logits, y), tempered)
    assert not torch.allclose(tempered, plain(logits, y))
    cfg.train.class_weights = True
    cfg.train.label_smoothing = 0.1
    smoothed = _loss_fn(task, cfg, "cpu")
    common = torch.zeros(8, dtype=torch.long)  # every face of the common class
    right, rare_guess = torch.tensor([[4.0, -4.0]]).repeat(8, 1), torch.tensor([[-4.0, 4.0]]).repeat(8, 1)
    assert smoothed(right, common) < smoothed(rare_guess, common)
    # torch's weight= also weighs the smoothing term per class, and so prefers the wrong, rare answer here
    weighted_torch = lambda z: torch.nn.functional.cross_entropy(z, common, weight=w, label_smoothing=0.1)  # noqa: E731
    assert weighted_torch(right) > weighted_torch(rare_guess)
