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


# --- training checkpoints: --resume reads nothing that can run code ----------------------------------------


class Planted:
    """A pickle that creates a marker file when unpickled: what a tampered checkpoint would hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def plant(path, marker) -> None:
    import torch

    path.unlink(missing_ok=True)
    torch.save({"state": Planted(marker)}, path)


# every file Accelerate's save_state wrote (and load_state unpickled) and every file emolab writes now
ACCELERATE_FILES = ["custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "custom_checkpoint_2.pkl",
                    "random_states_0.pkl", "optimizer.bin", "scheduler.bin", "pytorch_model.bin", "scaler.pt"]
EMOLAB_FILES = ["state.pt", "rng_0.pt", "model.safetensors"]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A face CNN run (EMA and augmentation on, so every kind of state is checkpointed) stopped after its
    first epoch of two, with the config that resumes it."""
    from tests.conftest import crash_after_first_epoch
    from tests.test_faces import fer_config, write_fer

    root = tmp_path_factory.mktemp("interrupted")
    write_fer(root / "fer", 70)
    raw = fer_config(root, root / "fer", epochs=2, ema_decay=0.9, augment={"hflip": True})
    raw["eval"]["report"] = False
    with pytest.raises(KeyboardInterrupt):
        run(config_from_dict(raw), say=crash_after_first_epoch)
    partial = root / "runs" / "faces.partial"
    assert sorted(p.name for p in (partial / "checkpoints" / "last").iterdir()) == sorted(
        [*EMOLAB_FILES, "trainer_state.json"])
    return raw, partial


def _copy(interrupted, tmp_path):
    import shutil

    raw, partial = interrupted
    runs = tmp_path / "runs"
    shutil.copytree(partial, runs / partial.name)
    return config_from_dict({**raw, "output": {**raw["output"], "dir": str(runs)}}), runs / partial.name


@pytest.mark.parametrize("name", EMOLAB_FILES)
def test_a_planted_pickle_in_a_checkpoint_file_is_refused_unopened(interrupted, tmp_path, name):
    cfg, partial = _copy(interrupted, tmp_path)
    marker = tmp_path / "code-ran"
    plant(partial / "checkpoints" / "last" / name, marker)
    with pytest.raises(EmolabError, match=f"{name}: not a checkpoint file emolab wrote") as info:
        run(cfg, resume=True, say=lambda _m: None)
    assert "without --resume" in str(info.value)
    assert not marker.exists()


def test_pickles_beside_a_checkpoint_are_never_opened_and_resume_completes(interrupted, tmp_path, capsys):
    cfg, partial = _copy(interrupted, tmp_path)
    marker = tmp_path / "code-ran"
    for name in ACCELERATE_FILES:
        plant(partial / "checkpoints" / "last" / name, marker)
    out = run(cfg, resume=True, say=lambda _m: None)
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    assert not marker.exists()


def test_an_old_accelerate_checkpoint_asks_for_a_fresh_start(interrupted, tmp_path):
    cfg, partial = _copy(interrupted, tmp_path)
    last = partial / "checkpoints" / "last"
    marker = tmp_path / "code-ran"
    state = json.loads((last / "trainer_state.json").read_text())
    del state["format"]  # what emolab wrote beside Accelerate's pickles
    (last / "trainer_state.json").write_text(json.dumps(state))
    for name in [*EMOLAB_FILES, *ACCELERATE_FILES]:
        plant(last / name, marker)
    with pytest.raises(EmolabError, match="checkpoint of an older emolab.* pickles") as info:
        run(cfg, resume=True, say=lambda _m: None)
    assert "start the run again without --resume" in str(info.value) and not marker.exists()


def test_a_damaged_trainer_state_is_a_clear_error(interrupted, tmp_path):
    cfg, partial = _copy(interrupted, tmp_path)
    (partial / "checkpoints" / "last" / "trainer_state.json").write_text("{not json")
    with pytest.raises(EmolabError, match="trainer_state.json: not a checkpoint file emolab wrote"):
        run(cfg, resume=True, say=lambda _m: None)


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant", "plateau", "onecycle"])
def test_every_schedule_state_loads_with_weights_only(tmp_path, scheduler):
    import torch

    from emolab.training import _Schedule

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    schedule = _Schedule(opt, scheduler, 2, 10)
    for _ in range(3):
        opt.step()
        schedule.step()
    torch.save({"optimizer": opt.state_dict(), "schedule": schedule.state_dict()}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    again = _Schedule(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=0.1), scheduler, 2, 10)
    again.load_state_dict(state["schedule"])
    assert again.state_dict() == schedule.state_dict()
