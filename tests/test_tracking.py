"""Trackers read back with their own readers; a missing one warns and the run goes on."""

import pytest

from emolab.config import config_from_dict
from emolab.pipeline import run
from tests.test_training import tiny_config


def test_tensorboard_and_mlflow_read_back_and_a_missing_tracker_only_warns(tmp_path, tiny_csv, monkeypatch):
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    raw = tiny_config(tmp_path, tiny_csv, epochs=2)
    raw["output"].update(trackers=["tensorboard", "mlflow", "wandb"], mlflow_uri=uri, experiment="emolab-test")
    raw["eval"]["report"] = False
    messages = []
    out = run(config_from_dict(raw), say=messages.append)
    assert any("tracker 'wandb' is not installed" in m for m in messages)
    assert (out / "metrics.json").is_file()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"step/lr", "step/grad_norm", "loss/train", "loss/validation", "macro_f1/validation"} <= set(tags)
    assert [e.step for e in acc.Scalars("loss/validation")] == [1, 2]
    n_steps = len(acc.Scalars("step/lr"))
    assert n_steps == len((out / "steps.jsonl").read_text().splitlines())

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("emolab-test")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    r = runs[0]
    assert r.data.params["model.pooling"] == "mean" and "test_accuracy" in r.data.metrics
    history = client.get_metric_history(r.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "run")}
    assert "run/metrics.json" in artifacts and "run/model" in artifacts


def test_an_unknown_tracker_name_lists_the_valid_ones(tmp_path, tiny_csv):
    from emolab.errors import EmolabError

    raw = tiny_config(tmp_path, tiny_csv)
    raw["output"]["trackers"] = ["tensorbored"]
    with pytest.raises(EmolabError, match="mlflow, tensorboard, wandb"):
        run(config_from_dict(raw), say=lambda _m: None)
