"""``emolab score``: every input and output format, ids and kept columns, blank and unreadable rows, order after
length sorting, bounded chunks, resume after a kill, no overwriting, clean errors, Predictor == CLI, faces,
and (slow) the Ray engine against the local one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolab.scoring import Predictor, ScoreOptions, score
from emolab.scoring.writers import partial_dir
from tests.conftest import make_texts


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    from emolab.config import config_from_dict
    from emolab.pipeline import run

    root = tmp_path_factory.mktemp("score")
    texts, labels = make_texts(120)
    pd.DataFrame({"sentence": texts, "emotion": labels}).to_csv(root / "mine.csv", index=False)
    raw = {"data": {"name": "csv", "path": str(root / "mine.csv"), "text_column": "sentence",
                    "label_column": "emotion"}, "model": {"name": "tfidf"},
           "eval": {"timing": False, "report": False}, "output": {"dir": str(root / "runs"), "name": "moods"}}
    return run(config_from_dict(raw), say=quiet)


@pytest.fixture(scope="module")
def predictor(text_run) -> Predictor:
    return Predictor(text_run)


TEXTS = ["i feel furious today", "", "so scared right now really", "glad", "   ", "i am delighted and cheerful now"]


def cli(*args) -> tuple[int, str, str]:
    """``emolab ...`` in this process (no interpreter start): exit code, stdout, stderr."""
    from emolab.cli import main

    argv = sys.argv
    sys.argv = ["emolab", *map(str, args)]
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    return pd.read_json(path, lines=True)


def expected(predictor: Predictor, texts: list[str]) -> pd.DataFrame:
    """Each text scored alone: what every row of any output must say."""
    rows = [predictor([t]).iloc[0] for t in texts]
    return pd.DataFrame(rows).reset_index(drop=True)


def check_rows(got: pd.DataFrame, predictor: Predictor, texts: list[str]) -> None:
    want = expected(predictor, texts)
    assert got["row"].tolist() == list(range(len(texts)))
    assert got["label"].fillna("").tolist() == want["label"].tolist()
    assert got["reason"].fillna("").tolist() == want["reason"].tolist()
    np.testing.assert_allclose(got[predictor.prob_columns].to_numpy(float), want[predictor.prob_columns].to_numpy(float),
                               rtol=1e-5, atol=1e-6)


# --- formats ---------------------------------------------------------------------------------------------------

def write_input(folder: Path, fmt: str, texts: list[str]) -> Path:
    ids = [f"id-{i}" for i in range(len(texts))]
    frame = pd.DataFrame({"id": ids, "body": texts, "lang": ["en"] * len(texts)})
    path = folder / f"in.{fmt}"
    if fmt == "txt":
        path.write_text("".join(t + "\n" for t in texts))
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["txt", "csv", "tsv", "jsonl", "parquet"])
def test_each_input_format_gives_one_row_per_input_in_order(tmp_path, text_run, predictor, fmt):
    texts = TEXTS * 4
    src = write_input(tmp_path, fmt, texts)
    columns = {} if fmt == "txt" else {"column": "body", "id_column": "id", "keep": ["lang"]}
    out = tmp_path / "out.parquet"
    summary = score(text_run, src, out, ScoreOptions(chunk_rows=5, **columns), progress=False, say=quiet)
    got = read(out)
    check_rows(got, predictor, texts)
    assert summary.rows_in == summary.rows_out == len(texts) and summary.blanks == 8
    if fmt != "txt":
        assert got.columns[:3].tolist() == ["row", "id", "lang"]
        assert got["id"].tolist() == [f"id-{i}" for i in range(len(texts))] and set(got["lang"]) == {"en"}
    assert not partial_dir(out).exists()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_each_output_format(tmp_path, text_run, predictor, suffix):
    src = write_input(tmp_path, "csv", TEXTS)
    out = tmp_path / f"out{suffix}"
    score(text_run, src, out, ScoreOptions(column="body", id_column="id", chunk_rows=4), progress=False, say=quiet)
    got = read(out)
    check_rows(got, predictor, TEXTS)
    assert got.columns.tolist() == ["row", "id", "label", "score", "reason", *predictor.prob_columns]
    assert got.loc[1, "reason"] == "blank" and pd.isna(got.loc[1, "score"])


def test_blank_and_unreadable_rows_are_kept_with_a_reason(tmp_path, text_run):
    txt = tmp_path / "mixed.txt"
    txt.write_bytes(b"i feel glad\n\nbad \xff bytes\n  \ni am angry\n")
    out = tmp_path / "out.csv"
    summary = score(text_run, txt, out, progress=False, say=quiet)
    got = read(out)
    assert len(got) == 5 and summary.blanks == 2 and summary.errors == 1
    assert got["reason"].fillna("").tolist()[:4] == ["", "blank", "unreadable: not UTF-8 (invalid start byte at byte 4)",
                                                     "blank"]
    assert got["label"].fillna("").tolist() == ["joy", "", "", "", "anger"]

    jl = tmp_path / "in.jsonl"
    jl.write_text('{"text": "i feel glad"}\nnot json\n{"other": 1}\n{"text": null}\n\n{"text": "so scared"}\n')
    got = read(score_to(text_run, jl, tmp_path / "j.parquet"))
    assert len(got) == 6
    assert got["reason"].tolist()[1].startswith("unreadable: line 2 is not a JSON object")
    assert got["reason"].tolist()[2:5] == ["blank"] * 3 and got["label"].tolist()[5] == "fear"


def score_to(run, src, out, **options) -> Path:
    score(run, src, out, ScoreOptions(**options), progress=False, say=quiet)
    return out


# --- batching and chunks ---------------------------------------------------------------------------------------

class Spy:
    """Wraps a predictor's model: records every batch it is given."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict_proba(self, texts, batch_size=64):
        self.batches.append(list(texts))
        return self.model.predict_proba(texts, batch_size)


def test_texts_are_length_sorted_into_batches_and_answered_in_input_order(text_run, predictor):
    p = Predictor(text_run, batch_size=3)
    p.model = spy = Spy(p.model)
    texts = ["i feel furious today and very annoyed now", "glad", "so scared", "", "i feel quite happy"]
    got = p(texts)
    for batch in spy.batches:
        assert [len(t) for t in batch] == sorted(len(t) for t in batch)
    assert [len(b) for b in spy.batches] == [3, 1] and spy.batches[0][0] == "glad"
    check_rows(got.assign(row=range(len(texts))), predictor, texts)


def test_chunks_are_bounded_by_chunk_rows(tmp_path, text_run):
    class Counting:
        def __init__(self, inner):
            self.inner, self.sizes = inner, []

        def __call__(self, chunk):
            self.sizes.append(len(chunk))
            return self.inner(chunk)

    texts, _ = make_texts(103)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    spy = Counting(Predictor(text_run))
    score(text_run, src, tmp_path / "out.parquet", ScoreOptions(chunk_rows=10), progress=False, say=quiet,
          predictor=spy)
    assert spy.sizes == [10] * 10 + [3]
    assert len(read(tmp_path / "out.parquet")) == 103


# --- resume and overwrite --------------------------------------------------------------------------------------

class Killed(Exception):
    pass


def test_resume_after_a_kill_scores_every_row_exactly_once_in_order(tmp_path, text_run):
    texts, _ = make_texts(57)
    texts[7] = ""
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    whole = read(score_to(text_run, src, tmp_path / "whole.parquet", chunk_rows=10))

    calls = []
    inner = Predictor(text_run)

    def dies_on_the_fourth_chunk(chunk):
        calls.append(int(chunk["row"].iloc[0]))
        if len(calls) == 4:
            (partial_dir(out) / ".part-00003.parquet.tmp").write_bytes(b"half a part")  # killed while writing
            raise Killed
        return inner(chunk)

    out = tmp_path / "out.parquet"
    with pytest.raises(Killed):
        score(text_run, src, out, ScoreOptions(chunk_rows=10), progress=False, say=quiet,
              predictor=dies_on_the_fourth_chunk)
    assert not out.exists()
    manifest = json.loads((partial_dir(out) / "manifest.json").read_text())
    assert [c["part"] for c in manifest["chunks"]] == [f"part-{i:05d}.parquet" for i in range(3)]

    code, _, err = cli("score", text_run, src, "--output", out, "--chunk-rows", 10)  # without --resume
    assert code == 2 and "unfinished scoring" in err and "--resume" in err

    calls.clear()
    summary = score(text_run, src, out, ScoreOptions(chunk_rows=10), resume=True, progress=False, say=quiet,
                    predictor=lambda chunk: (calls.append(int(chunk["row"].iloc[0])), inner(chunk))[1])
    assert calls == [30, 40, 50]  # only the chunks not finished before
    assert summary.rows_in == 57 and summary.resumed_chunks == 3 and summary.blanks == 1
    pd.testing.assert_frame_equal(read(out), whole)
    assert not partial_dir(out).exists()


def test_resume_refuses_another_model_input_or_options(tmp_path, text_run):
    src = tmp_path / "in.txt"
    src.write_text("i feel glad\nso scared\n" * 5)
    out = tmp_path / "out.parquet"

    def killed(_chunk):
        raise Killed

    with pytest.raises(Killed):
        score(text_run, src, out, ScoreOptions(chunk_rows=4), progress=False, say=quiet, predictor=killed)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(text_run, copy)
    (copy / "metrics.json").write_text("{}")  # another model (its tuned thresholds changed)
    code, _, err = cli("score", copy, src, "--output", out, "--resume", "--chunk-rows", 4)
    assert code == 2 and "another model" in err, err
    other = tmp_path / "other.txt"
    other.write_text("i feel glad\n")
    code, _, err = cli("score", text_run, other, "--output", out, "--resume", "--chunk-rows", 4)
    assert code == 2 and "another input" in err and "Traceback" not in err, err
    code, _, err = cli("score", text_run, src, "--output", out, "--resume", "--chunk-rows", 5)
    assert code == 2 and "another options" in err, err
    src.write_text("i feel glad\nso scared\n" * 6)  # the input changed since
    code, _, err = cli("score", text_run, src, "--output", out, "--resume", "--chunk-rows", 4)
    assert code == 2 and "another input" in err, err
    assert (partial_dir(out) / "manifest.json").is_file() and not out.exists()


def test_an_existing_output_is_never_overwritten_without_overwrite(tmp_path, text_run):
    src = tmp_path / "in.txt"
    src.write_text("i feel glad\n")
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    code, _, err = cli("score", text_run, src, "--output", out)
    assert code == 2 and "exists" in err and "--overwrite" in err
    assert out.read_text() == "precious\n"
    code, _, err = cli("score", text_run, src, "--output", src)
    assert code == 2 and src.read_text() == "i feel glad\n"
    code, out_text, err = cli("score", text_run, src, "--output", out, "--overwrite")
    assert code == 0, err
    assert read(out)["label"].tolist() == ["joy"] and "scored 1 rows" in out_text


# --- errors ----------------------------------------------------------------------------------------------------

def test_bad_input_is_a_clean_error(tmp_path, text_run):
    csv = tmp_path / "in.csv"
    pd.DataFrame({"review": ["i feel glad"], "id": [1]}).to_csv(csv, index=False)
    out = tmp_path / "out.parquet"
    cases = [
        (["score", text_run, csv, "-o", out, "--column", "reveiw"], ["no column 'reveiw'", "did you mean 'review'",
                                                                    "columns there: review, id"]),
        (["score", text_run, csv, "-o", out, "--column", "review", "--keep", "idd"], ["--keep", "did you mean 'id'"]),
        (["score", text_run, tmp_path / "nope.csv", "-o", out], ["input not found"]),
        (["score", text_run, csv, "-o", out, "--column", "review", "--engine", "spark"], ["unknown --engine 'spark'",
                                                                                          "local, ray"]),
        (["score", text_run, csv, "-o", tmp_path / "out.xlsx", "--column", "review"], [".parquet, .csv or .jsonl"]),
        (["score", text_run, csv, "-o", csv / "sub" / "out.parquet", "--column", "review"], ["cannot write the output"]),
        (["score", tmp_path / "no-run", csv, "-o", out], ["model not found"]),
        (["score", text_run, csv, "-o", out, "--chunk-rows", 0], ["--chunk-rows must be at least 1"]),
    ]
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    cases.append((["score", text_run, corrupt, "-o", out], ["bad.parquet: not a readable Parquet file"]))
    binary = tmp_path / "bad.csv"
    binary.write_bytes(b"\x00\xff\xfe" * 100)
    cases.append((["score", text_run, binary, "-o", out], ["bad.csv: not a readable CSV file"]))
    for args, needles in cases:
        code, _, err = cli(*args)
        assert code == 2, (args, err)
        assert "Traceback" not in err
        for needle in needles:
            assert needle in " ".join(err.split()), (needle, err)
        assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_ray_engine_without_ray_says_how_to_install_it(tmp_path, text_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    src = tmp_path / "in.txt"
    src.write_text("i feel glad\n")
    code, _, err = cli("score", text_run, src, "-o", tmp_path / "out.parquet", "--engine", "ray")
    assert code == 2 and "pip install 'emolab[ray]'" in err, err


# --- Predictor, predict --------------------------------------------------------------------------------------

def test_predictor_gives_what_the_cli_writes(tmp_path, text_run):
    import emolab

    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "text": ["i feel furious", "", "so glad", "quite nervous now"]})
    src = tmp_path / "in.parquet"
    frame.to_parquet(src, index=False)
    out = tmp_path / "out.parquet"
    code, _, err = cli("score", text_run, src, "-o", out, "--id-column", "id", "--chunk-rows", 3, "--batch-size", 2)
    assert code == 0, err
    p = emolab.Predictor(text_run)
    direct = p(frame.assign(row=range(4))[["row", "id", "text"]])
    pd.testing.assert_frame_equal(read(out), direct, check_dtype=False)
    as_dict = p({"text": np.array(frame["text"].tolist(), dtype=object)})
    assert isinstance(as_dict, dict) and as_dict["label"].tolist() == direct["label"].tolist()
    assert p(["so glad"])["label"].tolist() == ["joy"]


def test_multi_label_runs_add_every_label_over_its_tuned_threshold(tmp_path, text_run):
    from emolab.records import LabelSet

    p = Predictor(text_run)

    class Fixed:
        labels = LabelSet(p.model.labels.names, multi_label=True)

        def predict_proba(self, texts, batch_size=64):
            return np.array([[0.35, 0.55, 0.9]] * len(texts))

    p.model, p.multi_label, p.thresholds = Fixed(), True, np.array([0.3, 0.6, 0.5])
    got = p(["i feel", ""])
    assert got["labels"].tolist() == ["anger;joy", ""] and got["label"].tolist() == ["joy", ""]
    assert got.columns.tolist() == ["label", "score", "labels", "reason", *p.prob_columns]


def test_predict_input_keeps_blank_lines(tmp_path, text_run):
    src = tmp_path / "in.txt"
    src.write_text("i feel glad\n\nso scared\n")
    code, _, err = cli("predict", text_run, "--input", src, "--output", tmp_path / "p.csv")
    assert code == 0, err
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[2].startswith(",,") and lines[1].split(",")[1] == "joy"


# --- faces -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def face_model(tmp_path_factory) -> Path:
    from emolab.labels import FER2013_LABELS
    from emolab.models import create_model, model_config
    from emolab.records import LabelSet

    folder = tmp_path_factory.mktemp("faces") / "model"
    create_model(model_config("cnn-small", width=4, hidden_size=8), LabelSet(FER2013_LABELS)).save(folder)
    return folder


def test_faces_one_row_per_face_and_a_row_for_each_photo_without_one(tmp_path, face_model):
    from PIL import Image

    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(folder / f"crop{i}.png")
    Image.new("RGB", (400, 300), (120, 120, 120)).save(folder / "empty.jpg")  # a photo with no face
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "faces.csv"
    code, text, err = cli("score", face_model, folder, "-o", out, "--detector", "haar", "--chunk-rows", 2)
    assert code == 0, err
    got = read(out)
    assert got["path"].map(lambda p: Path(p).name).tolist() == ["broken.png", "crop0.png", "crop1.png", "crop2.png",
                                                                "empty.jpg"]
    assert got["row"].tolist() == [0, 1, 2, 3, 4]
    assert got["reason"].fillna("").tolist()[0].startswith("unreadable")
    assert got["reason"].fillna("").tolist()[4] == "no face found"
    assert got["face"].tolist()[1:4] == [0, 0, 0] and got["label"].notna().sum() == 3
    probs = got[[c for c in got.columns if c.startswith("p_")]].to_numpy(float)[1:4]
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    assert "3 faces, 1 without a face" in " ".join(text.split()) and "1 unreadable" in text

    listing = tmp_path / "list.txt"
    listing.write_text("pics/crop1.png\npics/crop0.png\n")
    got2 = read(score_to(face_model, listing, tmp_path / "l.parquet", detector="haar"))
    np.testing.assert_allclose(got2[[c for c in got2.columns if c.startswith("p_")]].to_numpy(float),
                               probs[[1, 0]], rtol=1e-4)
    got3 = read(score_to(face_model, str(folder / "crop*.png"), tmp_path / "g.parquet", detector="haar"))
    assert len(got3) == 3


# --- the Ray engine (slow) ------------------------------------------------------------------------------------

def ray_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    marks = ("raylet", "gcs_server", "ray::")
    return [line for line in out.splitlines() if any(k in line for k in marks) and "ps -eo" not in line]


@pytest.mark.slow
def test_ray_engine_equals_the_local_engine_row_by_row(tmp_path, text_run):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'emolab[ray]')")
    before = ray_processes()
    texts, _ = make_texts(500)
    texts[3] = texts[77] = ""
    frame = pd.DataFrame({"id": [f"t{i}" for i in range(500)], "text": texts})
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    local = read(score_to(text_run, src, tmp_path / "local.parquet", id_column="id", chunk_rows=64))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "emolab.cli", "score", str(text_run), str(src), "-o",
                        str(tmp_path / "ray.parquet"), "--id-column", "id", "--chunk-rows", "64", "--engine", "ray",
                        "--workers", "2"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    pd.testing.assert_frame_equal(read(tmp_path / "ray.parquet"), local, check_dtype=False)
    assert ray_processes() == before, "Ray processes were left running"


@pytest.mark.slow
def test_ray_engine_on_faces_equals_the_local_engine(tmp_path, face_model):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'emolab[ray]')")
    from PIL import Image

    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(folder / f"crop{i}.png")
    Image.new("RGB", (300, 200), (90, 90, 90)).save(folder / "empty.jpg")
    (folder / "broken.png").write_bytes(b"x")
    local = read(score_to(face_model, folder, tmp_path / "local.parquet", detector="haar"))
    code, _, err = cli("score", face_model, folder, "-o", tmp_path / "ray.parquet", "--engine", "ray",
                       "--detector", "haar")
    assert code == 0, err[-3000:]
    pd.testing.assert_frame_equal(read(tmp_path / "ray.parquet"), local)
    assert not [p for p in ray_processes() if "ray::" in p]
