"""emolab's own hostile suite for the command line: a careless user's and an attacker's inputs.

Each case asserts the exit code, that no traceback is printed, that the message names the problem, and that
nothing outside the run or output it was allowed to write changed (a snapshot of the folder before and after).
Commands run in-process through ``emolab.cli.main`` (a subprocess only where a signal is sent).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from emolab.cli import main


def emolab(capsys, *args) -> tuple[int, str]:
    """Run the CLI in this process: (exit code, stdout + stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())  # Rich wraps long lines at the terminal's width


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: its size and content hash."""
    return {str(p.relative_to(root)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def clean_error(code: int, text: str, *needles: str, expected: int = 2) -> None:
    assert code == expected, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder holding a user's data, a config, two finished TF-IDF runs, a tiny transformer run and a face
    model."""
    import pandas as pd
    from conftest import TINY_ENCODER, make_texts

    from emolab.config import config_from_dict
    from emolab.pipeline import run

    from emolab.labels import FER2013_LABELS
    from emolab.models import create_model
    from emolab.models.registry import model_config
    from emolab.records import LabelSet

    root = tmp_path_factory.mktemp("hostile")
    texts, ys = make_texts(90)
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(root / "mine.csv", index=False)
    cfg = {"data": {"name": "csv", "path": str(root / "mine.csv"), "text_column": "sentence",
                    "label_column": "emotion"},
           "model": {"name": "tfidf", "classifier": "logreg", "C": 10.0},
           "eval": {"timing": False, "bootstrap": 0, "report": False}, "output": {"dir": str(root / "runs")}}
    (root / "mine.yaml").write_text(yaml.safe_dump(cfg))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for name in ("first", "second"):
            try:
                main(["run", str(root / "mine.yaml"), "--set", f"output.name={name}"])
            except SystemExit as exc:
                assert not exc.code, exc.code
    finally:
        os.chdir(cwd)
    tiny = {**cfg, "model": {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "max_length": 32},
            "train": {"epochs": 1, "batch_size": 16, "lr": 2e-3}, "output": {"dir": str(root / "runs"), "name": "tiny"}}
    run(config_from_dict(tiny), say=lambda _m: None)  # an exportable run
    face = root / "face-model"
    create_model(model_config("cnn-small", width=4, hidden_size=8), LabelSet(FER2013_LABELS)).save(face)
    return root


@pytest.fixture
def here(world, monkeypatch):
    monkeypatch.chdir(world)
    return world


# --- data loss --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [".", "..", "a/b", "../escape", ".hidden", "x\\\\y"])
def test_a_run_name_is_a_name(here, capsys, name):
    before = snapshot(here)
    code, text = emolab(capsys, "run", "mine.yaml", "--set", f"output.name={name}", "--overwrite")
    clean_error(code, text, "is not a name")
    assert snapshot(here) == before  # runs/ and every run in it kept


def test_export_never_deletes_what_it_did_not_create(here, capsys, tmp_path):
    mine = tmp_path / "x.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own work")
    code, text = emolab(capsys, "export", "runs/tiny", "--out", tmp_path / "x")
    assert code == 0, text
    assert (mine / "notes.txt").read_text() == "the user's own work"
    assert (tmp_path / "x" / "emolab_model.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.partial")]  # its own build folder is gone


@pytest.mark.parametrize("target", ["runs/first", "runs", "runs/first/model", "runs/second", "."])
def test_export_never_writes_into_or_over_a_run(here, capsys, target):
    before = snapshot(here)
    code, text = emolab(capsys, "export", "runs/first", "--out", target, "--overwrite")
    clean_error(code, text, "--out")
    assert snapshot(here) == before


def test_export_does_not_replace_a_folder_it_did_not_write(here, capsys, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"jpeg")
    code, text = emolab(capsys, "export", "runs/first", "--out", tmp_path / "photos", "--overwrite")
    clean_error(code, text, "is not an emolab export")
    assert (tmp_path / "photos" / "a.jpg").read_bytes() == b"jpeg"


def test_export_replaces_an_export_only_when_asked(here, capsys, tmp_path):
    assert emolab(capsys, "export", "runs/tiny", "--out", tmp_path / "e")[0] == 0
    code, text = emolab(capsys, "export", "runs/tiny", "--out", tmp_path / "e")
    clean_error(code, text, "exists", "--overwrite")
    assert emolab(capsys, "export", "runs/tiny", "--out", tmp_path / "e", "--overwrite")[0] == 0


def test_predict_never_writes_over_its_input(here, capsys, tmp_path):
    inp = tmp_path / "t.txt"
    inp.write_text("i feel happy\ni feel scared\n")
    for extra in ([], ["--overwrite"]):
        code, text = emolab(capsys, "predict", "runs/first", "--input", inp, "--output", inp, *extra)
        clean_error(code, text, "is one of the inputs")
        assert inp.read_text() == "i feel happy\ni feel scared\n"


def test_predict_output_is_replaced_only_when_asked(here, capsys, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("precious")
    code, text = emolab(capsys, "predict", "runs/first", "i feel happy", "--output", out)
    clean_error(code, text, "exists", "--overwrite")
    assert out.read_text() == "precious"
    code, text = emolab(capsys, "predict", "runs/first", "i feel happy", "--output", out, "--overwrite")
    assert code == 0 and out.read_text().startswith("input,label"), text


def _photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(path)  # a 48x48 crop: taken as a face
    return path


def test_annotate_gives_each_input_its_own_file_and_keeps_existing_ones(here, capsys, tmp_path):
    a = _photo(tmp_path / "x" / "face.png", 0)
    b = _photo(tmp_path / "y" / "face.png", 1)
    c = _photo(tmp_path / "y" / "face.jpg", 2)
    out = tmp_path / "annotated"
    code, text = emolab(capsys, "predict", "face-model", a, b, c, "--annotate", out)
    assert code == 0, text
    written = sorted(p.name for p in out.iterdir())
    assert written == ["face-2.annotated.png", "face-3.annotated.png", "face.annotated.png"], written
    assert "wrote 3 annotated image(s)" in text
    before = snapshot(out)
    code, text = emolab(capsys, "predict", "face-model", a, b, c, "--annotate", out)
    clean_error(code, text, "exists", "--overwrite")
    assert snapshot(out) == before
    assert emolab(capsys, "predict", "face-model", a, b, c, "--annotate", out, "--overwrite")[0] == 0


def _video(path: Path, frames: int = 6) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 40 * i % 255, dtype=np.uint8))
    writer.release()
    return path


def test_a_video_is_never_replaced_by_its_csv(here, capsys, tmp_path):
    clip = _video(tmp_path / "clip.mp4")
    before = clip.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, text = emolab(capsys, "predict", "face-model", clip, "--output", clip, "--detector", "haar", *extra)
        clean_error(code, text, "is one of the inputs")
    assert clip.read_bytes() == before


def test_video_outputs_land_beside_the_clip_not_in_the_working_folder(here, capsys, tmp_path):
    clip = _video(tmp_path / "clip.mp4")
    before = snapshot(here)
    code, text = emolab(capsys, "predict", "face-model", clip, "--detector", "haar")
    assert code == 0, text
    assert (tmp_path / "clip.emotions.csv").is_file() and (tmp_path / "clip.emotions.timeline.png").is_file()
    assert snapshot(here) == before
    code, text = emolab(capsys, "predict", "face-model", clip, "--detector", "haar")  # a second time: kept
    clean_error(code, text, "exists", "--overwrite")


# --- exit codes and clean errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["predcit"], "Did you mean 'predict'"),
    (["run"], "Missing argument"),
    (["predict", "--bogus", "x"], "No such option"),
    (["serve", "runs/first", "--port", "99999"], "--port"),
    (["predict", "face-model", "a.png", "--min-face", "-5"], "--min-face"),
])
def test_usage_errors_print_usage_and_exit_2(here, capsys, args, needle):
    code, text = emolab(capsys, *args)
    clean_error(code, text, needle)
    assert "Usage" in text


@pytest.mark.parametrize("args,needle", [
    (["predict", "runs/first", ""], "input 1 is empty"),
    (["predict", "runs/first", "ok", "\udcff\udcfe"], "input 2 is not valid UTF-8"),
    (["predict", "face-model", "clip.mp4", "--fps", "0"], "--fps"),
    (["predict", "face-model", "clip.mp4", "--fps", "nan"], "--fps"),
    (["predict", "face-model", "clip.mp4", "--fps", "-3"], "--fps"),
    (["predict", "runs/first", "hi", "--output", "mine.csv/out.csv"], "is a file, not a folder"),
    (["run", "mine.yaml", "--set", "output.dir=mine.csv/runs"], "mine.csv"),
    (["compare", "runs/first", "runs/unfinished.partial"], "unfinished run"),
    (["predict", "runs/first", "hi", "--annotate", "somewhere"], "--annotate applies to face models"),
])
def test_bad_input_is_a_clean_error(here, capsys, args, needle):
    (here / "runs" / "unfinished.partial").mkdir(exist_ok=True)
    _video(here / "clip.mp4")
    before = snapshot(here)
    code, text = emolab(capsys, *args)
    clean_error(code, text, needle)
    assert snapshot(here) == before


def test_compare_leaves_unfinished_runs_out_of_a_glob(here, capsys, tmp_path):
    partial = here / "runs" / "half.partial"
    partial.mkdir(exist_ok=True)
    (partial / "metrics.json").write_text("{")  # half-written
    code, text = emolab(capsys, "compare", "--glob", "runs/*", "--out", tmp_path / "board")
    assert code == 0, text
    assert "half" not in (tmp_path / "board" / "leaderboard.md").read_text()


def test_a_damaged_model_file_is_named(here, capsys, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(here / "runs" / "first", broken)
    skops = next((broken / "model").glob("*.skops"))
    skops.write_bytes(skops.read_bytes()[:100])
    code, text = emolab(capsys, "predict", broken, "i feel happy")
    clean_error(code, text, "cannot read the model", "damaged")
    face = tmp_path / "face"
    shutil.copytree(here / "face-model", face)
    weights = face / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    code, text = emolab(capsys, "predict", face, _photo(tmp_path / "f.png", 3))
    clean_error(code, text, "cannot read the model")


def test_a_non_utf8_annotations_file_is_named(here, capsys, tmp_path):
    bad = tmp_path / "errors.csv"
    bad.write_bytes("id,annotation,fix\n1,caf\xe9,\n".encode("latin-1"))
    code, text = emolab(capsys, "analyze", "runs/first", "--annotations", bad)
    clean_error(code, text, "not UTF-8", str(bad))


def test_sanity_of_a_tfidf_svm_on_20_examples_runs(here, capsys):
    code, text = emolab(capsys, "sanity", "mine.yaml", "--overfit", "7", "--set", "model.classifier=svm")
    assert code == 0 and "PASSED" in text and "Traceback" not in text, text


def test_sanity_failure_exit_code(here, capsys, monkeypatch):
    import emolab.sanity as sanity

    real = sanity.sanity_check

    def failing(*args, **kwargs):
        result = real(*args, **kwargs)
        return {**result, "passed": False}

    monkeypatch.setattr(sanity, "sanity_check", failing)
    code, text = emolab(capsys, "sanity", "mine.yaml", "--overfit", "9")
    clean_error(code, text, "sanity check failed", expected=1)


def test_a_tfidf_run_that_cannot_resume_says_how_to_start_again(here, capsys):
    partial = here / "runs" / "stuck.partial"
    partial.mkdir(exist_ok=True)
    code, text = emolab(capsys, "run", "mine.yaml", "--set", "output.name=stuck", "--resume")
    clean_error(code, text, "--overwrite")
    code, text = emolab(capsys, "run", "mine.yaml", "--set", "output.name=stuck", "--overwrite")
    assert code == 0 and (here / "runs" / "stuck" / "metrics.json").is_file(), text


def test_ctrl_c_exits_130_with_a_resume_hint(tmp_path, shared_data):
    cfg = {"data": {"name": "emotion"}, "model": {"name": "tfidf", "classifier": "svm"},
           "output": {"dir": str(tmp_path / "runs"), "name": "stopped"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # a test run started in the background inherits SIGINT ignored (as shells do for `cmd &`): restore the default
    proc = subprocess.Popen([sys.executable, "-m", "emolab.cli", "run", str(tmp_path / "c.yaml")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    line = ""
    while "training" not in line and time.time() < deadline:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err, err
    assert (tmp_path / "runs" / "stopped.partial").is_dir() and not (tmp_path / "runs" / "stopped").exists()


def test_a_matrix_run_again_keeps_its_finished_cells(here, capsys, tmp_path):
    cfg = yaml.safe_load((here / "mine.yaml").read_text())
    cfg["output"] = {"dir": str(tmp_path / "runs"), "name": "grid"}
    cfg["matrix"] = {"model.C": [1.0, 10.0]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(cfg))
    code, text = emolab(capsys, "run", tmp_path / "grid.yaml")
    assert code == 0, text
    cells = sorted(p.name for p in (tmp_path / "runs" / "grid").iterdir() if (p / "metrics.json").is_file())
    assert len(cells) == 2, cells
    first = snapshot(tmp_path / "runs" / "grid" / cells[0])
    code, text = emolab(capsys, "run", tmp_path / "grid.yaml", "--resume")
    assert code == 0 and "finished earlier, kept" in text, text
    again = sorted(p.name for p in (tmp_path / "runs" / "grid").iterdir() if (p / "metrics.json").is_file())
    assert again == cells  # no <cell>-2
    assert snapshot(tmp_path / "runs" / "grid" / cells[0]) == first


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("yaml_text,args,needle", [
    (BOMB, [], "alias"),
    ("seed: 1\nseed: 2\n", [], "duplicate key 'seed'"),
    (None, ["--set", "train.lr=[1, 2"], "train.lr=[1, 2"),
    (None, ["--set", f"seed={2**32}"], "seed"),
    (None, ["--set", "data.max_train_examples=0"], "max_train_examples"),
])
def test_config_bombs_and_mistakes_are_clean_errors_that_leave_nothing(here, capsys, tmp_path, yaml_text, args, needle):
    config = here / "mine.yaml"
    if yaml_text is not None:
        config = tmp_path / "bad.yaml"
        config.write_text(yaml_text)
    before = snapshot(here)
    code, text = emolab(capsys, "run", config, *args)
    clean_error(code, text, needle)
    assert snapshot(here) == before  # no .partial run left to block the next one


def test_serving_one_model_twice_is_a_clean_error(here, capsys):
    code, text = emolab(capsys, "serve", "runs/first", "runs/first", "--port", "1")
    clean_error(code, text, "share the name 'first'", "a=PATH")
