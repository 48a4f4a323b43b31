"""Adding a model is one module (``tests/toy_model.py``): once imported, it is configured, validated,
trained, evaluated, analysed, reported and compared like the built-in models, and nothing else changed."""

from __future__ import annotations

import json

import pytest

from emolab.compare import compare
from emolab.config import config_from_dict
from emolab.errors import ConfigError
from emolab.pipeline import run
from emolab.rundir import open_run
from tests import toy_model  # noqa: F401  (registers keyword-centroid)


def test_a_registered_toy_model_runs_through_run_report_and_compare(tmp_path, tiny_csv):
    raw = {"data": {"name": "csv", "path": str(tiny_csv), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "keyword-centroid", "buckets": 4096, "alpha": 0.05},
           "output": {"dir": str(tmp_path / "runs"), "name": "toy"}, "eval": {"timing": False}, "seed": 1}
    with pytest.raises(ConfigError, match="model.temperature: must be positive"):  # its own section, checked
        config_from_dict({**raw, "model": {"name": "keyword-centroid", "temperature": -1.0}})
    with pytest.raises(ConfigError, match="model.bucket: unknown key for 'keyword-centroid' \\(did you mean"):
        config_from_dict({**raw, "model": {"name": "keyword-centroid", "bucket": 3}})

    out = run(config_from_dict(raw), say=lambda _m: None)
    reader = open_run(out)
    assert reader.card.model == "keyword-centroid" and reader.card.summary == "hashed-word centroids (4096 buckets)"
    assert reader.config.model.buckets == 4096
    assert reader.metrics["test"]["accuracy"] > 0.9  # one word gives the label away
    assert reader.model().predict_proba(["i feel furious"]).argmax() == reader.card.labels.names.index("anger")
    report = (out / "report.md").read_text()
    assert "`keyword-centroid`: hashed-word centroids (4096 buckets)" in report
    assert json.loads((out / "analysis" / "analysis.json").read_text())["n"] == len(reader.predictions("test").ids)

    rows = compare([out], tmp_path / "lb", say=lambda _m: None)
    assert rows[0]["model"] == "keyword-centroid" and rows[0]["scheduler"] == "-"
    assert "| toy | csv (mine.csv) | test | keyword-centroid |" in (tmp_path / "lb" / "leaderboard.md").read_text()
