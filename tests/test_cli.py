"""The command line end to end on a user's own CSV: run, evaluate, predict, and clean errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def emolab(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "emolab.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture
def csv_config(tmp_path, tiny_csv) -> Path:
    cfg = {"data": {"name": "csv", "path": str(tiny_csv), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "tfidf", "classifier": "logreg", "C": 10.0},
           "eval": {"timing": False}, "output": {"dir": str(tmp_path / "runs")}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_evaluate_predict_on_a_users_csv(tmp_path, csv_config):
    r = emolab("run", csv_config, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "mine"
    for name in ("config.yaml", "manifest.json", "history.jsonl", "metrics.json", "metrics.md",
                 "predictions_test.csv", "predictions_validation.csv", "plots/confusion_test.png",
                 "plots/class_distribution.png", "model/emolab_model.json", "data_stats.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9  # one word gives the label away
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["packages"]["scikit-learn"] and manifest["dataset"]["files"]
    assert set(manifest["wall_times"]) >= {"data_s", "train_s", "evaluate_s", "total_s"}
    header = (run / "predictions_test.csv").read_text().splitlines()[0]
    assert header == "id,input,true_label,pred_label,confidence,p_anger,p_fear,p_joy"

    r = emolab("evaluate", run, "--split", "test", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    again = json.loads((run / "evaluations" / "test-fp32.json").read_text())
    assert again["accuracy"] == metrics["test"]["accuracy"]
    r = emolab("evaluate", run, "--tta", "dense", cwd=tmp_path)  # test-time augmentation is for image runs
    assert r.returncode != 0 and "--tta applies to image runs" in r.stderr and "Traceback" not in r.stderr, r.stderr

    r = emolab("predict", run, "i feel furious today", "so scared right now", cwd=tmp_path)
    assert r.returncode == 0 and "anger" in r.stdout and "fear" in r.stdout, r.stdout + r.stderr
    inp = tmp_path / "in.txt"
    inp.write_text("i feel happy today\ni feel annoyed now\n")
    r = emolab("predict", run, "--input", inp, "--output", tmp_path / "out.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0].startswith("input,label,p_anger") and lines[1].split(",")[1] == "joy"


def test_a_run_is_never_silently_overwritten(tmp_path, csv_config):
    assert emolab("run", csv_config, cwd=tmp_path).returncode == 0
    first = (tmp_path / "runs" / "mine" / "manifest.json").read_text()
    r = emolab("run", csv_config, cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "runs" / "mine-2").is_dir()
    assert (tmp_path / "runs" / "mine" / "manifest.json").read_text() == first
    r = emolab("run", csv_config, "--overwrite", cwd=tmp_path)
    assert r.returncode == 0 and not (tmp_path / "runs" / "mine-3").exists()
    assert (tmp_path / "runs" / "mine" / "manifest.json").read_text() != first


@pytest.mark.parametrize("case,expected", [
    ("unknown_key", "train.lrr: unknown key"),
    ("bad_file", "bad.csv:3: empty text"),
    ("missing_column", "no column 'sentence'"),
    ("unknown_model", "unknown model 'bert'"),
    ("no_run", "is not a run directory"),
])
def test_errors_are_clean(tmp_path, csv_config, case, expected):
    cfg = yaml.safe_load(csv_config.read_text())
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,emotion\nhello,joy\n,anger\n")
    args = ["run", tmp_path / "c.yaml"]
    if case == "unknown_key":
        cfg["train"] = {"lrr": 1}
    elif case == "bad_file":
        cfg["data"]["path"] = str(bad)
    elif case == "missing_column":
        bad.write_text("text,emotion\nhello,joy\n")
        cfg["data"]["path"] = str(bad)
    elif case == "unknown_model":
        cfg["model"]["name"] = "bert"
    elif case == "no_run":
        args = ["evaluate", tmp_path]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = emolab(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert expected in r.stderr and "Traceback" not in r.stderr + r.stdout, r.stderr


def test_data_stats_command(tmp_path, shared_data):
    r = emolab("data", "stats", "goemotions", "--taxonomy", "ekman", "--out", tmp_path / "stats", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "43410" in r.stdout.replace(",", "") or "39555" in r.stdout
    assert "multi_label" in r.stdout and "3855" in r.stdout  # examples the drop policy loses
    assert (tmp_path / "stats" / "goemotions-ekman" / "class_distribution.png").is_file()


def test_atomic_writes_leave_files_with_the_mode_a_plain_write_would(tmp_path):
    from emolab.rundir import atomic_write

    atomic_write(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode


def _help_rows(*args: str) -> tuple[list[str], list[str]]:
    """(the command names, the rows of the Commands panel) of ``emolab ARGS --help`` on an 80-column terminal."""
    import re

    import typer.main

    from emolab.cli import app

    group = typer.main.get_command(app)
    for name in args:
        group = group.commands[name]
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}
    r = subprocess.run([sys.executable, "-m", "emolab.cli", *args, "--help"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    panel = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout).split("─ Commands ")[1].split("╰")[0]
    return list(group.commands), [line for line in panel.splitlines() if line.startswith("│")]


@pytest.mark.parametrize("group", [(), ("data",)])
def test_help_names_every_command_with_one_line_each(group):
    names, rows = _help_rows(*group)
    assert [row.split()[1] for row in rows] == names, "\n".join(rows)  # a wrapped summary starts a row with no name
    assert all(len(row.split()) > 3 for row in rows), "\n".join(rows)  # and each says what it does


def test_version_prints_the_installed_version():
    from importlib import metadata

    r = subprocess.run([sys.executable, "-m", "emolab.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"emolab {metadata.version('emolab')}", r.stdout + r.stderr
