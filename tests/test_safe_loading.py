"""Nothing emolab loads may execute code: TF-IDF pipelines are skops files that refuse untrusted types;
an old run's pickle opens only when the user says they trust it."""

from __future__ import annotations

import json

import joblib
import pytest

from emolab.config import config_from_dict
from emolab.errors import EmolabError
from emolab.models import load_model
from emolab.models.classical import PICKLE_FILE, SKOPS_FILE, save_pipeline
from emolab.pipeline import run
from tests.test_cli import emolab


class Payload:
    """A type no emolab model holds: what a tampered file would smuggle in."""


@pytest.fixture
def tfidf_run(tmp_path, tiny_csv):
    raw = {"data": {"name": "csv", "path": str(tiny_csv), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "tfidf"}, "eval": {"timing": False, "report": False},
           "output": {"dir": str(tmp_path / "runs"), "name": "tfidf"}}
    return run(config_from_dict(raw), say=lambda _m: None)


def test_a_tfidf_run_is_saved_as_skops_and_loads(tfidf_run):
    folder = tfidf_run / "model"
    assert (folder / SKOPS_FILE).is_file() and not (folder / PICKLE_FILE).exists()
    assert load_model(tfidf_run).predict_proba(["i feel furious"]).shape == (1, 3)


def test_a_tampered_skops_file_is_refused(tfidf_run):
    folder = tfidf_run / "model"
    model = load_model(tfidf_run)
    model.pipeline.steps.append(("extra", Payload()))
    save_pipeline(model.pipeline, folder / SKOPS_FILE)
    with pytest.raises(EmolabError, match="refusing to load types emolab does not write: .*Payload"):
        load_model(tfidf_run)


def test_an_old_pickle_needs_trust_and_is_then_resaved_as_skops(tfidf_run, monkeypatch):
    folder = tfidf_run / "model"
    joblib.dump(load_model(tfidf_run).pipeline, folder / PICKLE_FILE)  # what older emolab versions wrote
    (folder / SKOPS_FILE).unlink()
    monkeypatch.delenv("EMOLAB_TRUST_PICKLE", raising=False)
    with pytest.raises(EmolabError, match="is a pickle") as info:
        load_model(tfidf_run)
    assert "--trust-pickle" in str(info.value)
    res = emolab("predict", tfidf_run, "i feel so scared", cwd=tfidf_run.parent)
    assert res.returncode == 2 and "--trust-pickle" in res.stderr and "Traceback" not in res.stderr
    res = emolab("--trust-pickle", "predict", tfidf_run, "i feel so scared", cwd=tfidf_run.parent)
    assert res.returncode == 0 and "fear" in res.stdout, res.stderr
    assert (folder / SKOPS_FILE).is_file()  # re-saved: loads without the flag from now on
    res = emolab("predict", tfidf_run, "i feel so scared", cwd=tfidf_run.parent)
    assert res.returncode == 0 and "fear" in res.stdout
    assert json.loads((folder / "emolab_model.json").read_text())["model"] == "tfidf"
