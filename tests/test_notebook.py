"""report.ipynb: built with nbformat, executed with nbclient, valid, widget-free, and still running after the run
directory moves."""

import json
import re
import shutil

import nbformat
import pandas as pd
import pytest

from emolab.config import config_from_dict
from emolab.pipeline import run
from emolab.report.notebook import execute_notebook, write_notebook
from tests.conftest import make_texts
from tests.test_faces import fer_config, write_fer


def _printed(nb) -> str:
    return "".join("".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream")


def _check(path, metrics):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata and all("widgets" not in c.metadata for c in nb.cells)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    printed = _printed(nb)
    assert "TqdmWarning" not in printed and "site-packages" not in printed  # no warnings naming this machine's paths
    found = re.search(r"test accuracy (\d\.\d{4}), macro-F1 (\d\.\d{4})", printed)
    assert found and float(found.group(1)) == pytest.approx(metrics["test"]["accuracy"], abs=5e-5)
    assert float(found.group(2)) == pytest.approx(metrics["test"]["macro_f1"], abs=5e-5)
    assert "/tmp" not in "".join(c.source for c in nb.cells)  # no absolute path baked into the code
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images and path.stat().st_size < 2_000_000
    return nb


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nbtext")
    texts, ys = make_texts(150, seed=5)
    pd.DataFrame({"text": texts, "label": ys}).to_csv(tmp / "t.csv", index=False)
    cfg = config_from_dict({"data": {"name": "csv", "path": str(tmp / "t.csv")}, "model": {"name": "tfidf"},
                            "eval": {"timing": False, "notebook": True},
                            "output": {"dir": str(tmp / "runs"), "name": "text"}})
    return run(cfg, say=lambda _m: None)


def test_a_text_run_writes_an_executed_notebook_that_matches_its_metrics(text_run):
    metrics = json.loads((text_run / "metrics.json").read_text())
    nb = _check(text_run / "report.ipynb", metrics)
    sources = "".join(c.source for c in nb.cells)
    for section in ("## Dataset", "## Metrics", "## Confusion matrix", "## Misclassified test examples",
                    "## Error tags", "## Compared with published scores", "## Reproducibility",
                    "## Try it on your own texts"):
        assert section in sources, section
    assert "TQDM_DISABLE" in nb.cells[1].source and "open_run" in nb.cells[1].source


def test_the_notebook_runs_again_after_the_run_directory_moves(text_run, tmp_path):
    moved = tmp_path / "elsewhere" / "text"
    shutil.copytree(text_run, moved)
    nb = nbformat.read(moved / "report.ipynb", as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    execute_notebook(nb, moved)
    assert f"run {text_run.name}:" in _printed(nb)
    metrics = json.loads((moved / "metrics.json").read_text())
    assert f"test accuracy {metrics['test']['accuracy']:.4f}" in _printed(nb)


def test_a_transformer_run_notebook_has_no_progress_bar_warning(tmp_path):
    """transformers imports tqdm.auto, which in a kernel without ipywidgets warns with this machine's paths."""
    from tests.conftest import TINY_ENCODER

    texts, ys = make_texts(90, seed=6)
    pd.DataFrame({"text": texts, "label": ys}).to_csv(tmp_path / "t.csv", index=False)
    cfg = config_from_dict({"data": {"name": "csv", "path": str(tmp_path / "t.csv")},
                            "model": {"name": "transformer", "backbone_config": dict(TINY_ENCODER), "max_length": 32},
                            "train": {"epochs": 1, "batch_size": 16}, "eval": {"timing": False, "notebook": True},
                            "output": {"dir": str(tmp_path / "runs"), "name": "tiny"}})
    out = run(cfg, say=lambda _m: None)
    _check(out / "report.ipynb", json.loads((out / "metrics.json").read_text()))


def test_a_face_run_notebook_executes_and_reads_a_photo_and_its_model_card_parses(tmp_path):
    from huggingface_hub import ModelCard

    write_fer(tmp_path / "fer", 140, seed=2)
    raw = fer_config(tmp_path, tmp_path / "fer", epochs=1)
    raw["eval"]["report"] = True
    out = run(config_from_dict(raw), say=lambda _m: None)
    path = write_notebook(out, say=lambda _m: None)
    nb = _check(path, json.loads((out / "metrics.json").read_text()))
    assert "## Try it on a photo" in "".join(c.source for c in nb.cells)
    assert "grace_hopper.jpg" in json.dumps(nb.cells[-1].outputs)  # one row per face found in the photo
    card = ModelCard.load(out / "README.md")
    accuracy = next(r for r in card.data.eval_results if r.metric_type == "accuracy")
    assert accuracy.metric_value == pytest.approx(json.loads((out / "metrics.json").read_text())["test"]["accuracy"])
    assert card.data.pipeline_tag == "image-classification" and card.data.language is None


def test_a_multi_label_run_gets_intervals_a_model_card_and_a_notebook(shared_data, tmp_path):
    from huggingface_hub import ModelCard

    from emolab.compare import compare

    cfg = config_from_dict({"data": {"name": "goemotions", "taxonomy": "ekman", "multi_label_policy": "multi_label",
                                     "max_train_examples": 600, "max_eval_examples": 200},
                            "model": {"name": "tfidf"}, "eval": {"timing": False, "notebook": True},
                            "output": {"dir": str(tmp_path), "name": "ml"}})
    out = run(cfg, say=lambda _m: None)
    metrics = json.loads((out / "metrics.json").read_text())
    lo, hi = metrics["test"]["intervals"]["micro_f1"]
    assert lo <= metrics["test"]["micro_f1"] <= hi
    card = ModelCard.load(out / "README.md")
    micro = next(r for r in card.data.eval_results if r.metric_config == "micro")
    assert micro.metric_value == pytest.approx(metrics["test"]["micro_f1"], abs=1e-6)
    nb = nbformat.read(out / "report.ipynb", as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert f"test micro_f1 {metrics['test']['micro_f1']:.4f}" in _printed(nb)
    shutil.copytree(out, tmp_path / "again")
    from emolab.compare import terminal_text

    rows = compare([out, tmp_path / "again"], tmp_path / "lb", say=lambda _m: None)
    assert {r["verdict"] for r in rows} == {"best", "tied with best"}
    assert "micro-f1 +0.0000, paired bootstrap p" in terminal_text(rows, width=400)
