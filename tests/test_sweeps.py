"""Optuna sweeps: the search space from YAML, two workers sharing one SQLite study, the best trial's YAML."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from emolab.config import config_from_dict, load_config
from emolab.errors import ConfigError
from emolab.pipeline import run
from emolab.sweeps import validate_space


@pytest.fixture
def sweep_config(tmp_path):
    import numpy as np
    import pandas as pd

    from tests.conftest import make_texts

    texts, ys = make_texts(240, seed=1)
    rng = np.random.default_rng(1)
    ys = [y if rng.random() > 0.35 else ["anger", "fear", "joy"][rng.integers(3)] for y in ys]  # label noise
    data = tmp_path / "noisy.csv"
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(data, index=False)
    cfg = {"data": {"name": "csv", "path": str(data), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "tfidf", "classifier": "logreg"},
           "eval": {"timing": False, "report": False},
           "output": {"dir": str(tmp_path / "runs")},
           "sweep": {"metric": "macro_f1", "dir": str(tmp_path / "sweeps"),
                     "space": {"model.C": {"type": "loguniform", "low": 0.001, "high": 100.0},
                               "model.classifier": {"type": "categorical", "choices": ["logreg", "svm"]},
                               "model.max_features": {"type": "int", "low": 50, "high": 5000}}}}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_space_problems_are_reported_together():
    cfg = config_from_dict({"sweep": {"space": {"train.lrr": {"type": "loguniform", "low": 1, "high": 2},
                                                "train.lr": {"type": "gaussian"},
                                                "model.C": {"type": "uniform", "low": 1}}}})
    with pytest.raises(ConfigError) as info:
        validate_space(cfg, "x.yaml")
    text = str(info.value)
    assert "train.lrr: no such config key" in text and "type must be one of" in text and "missing high" in text


def _two_workers(tmp_path, sweep_config, storage=None):
    """Two `emolab sweep` processes on one study until it holds 8 finished trials; checks and returns it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "emolab.cli", "sweep", str(sweep_config), "--trials", "8"]
    cmd += ["--storage", storage] if storage else []
    workers = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=540) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, out[-2000:] + err[-2000:]
    import optuna

    folder = tmp_path / "sweeps" / "tune"
    study = optuna.load_study(study_name="tune", storage=storage or f"sqlite:///{folder / 'study.db'}")
    states = [t.state for t in study.trials]
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) >= 8 and len({t.number for t in study.trials}) == len(study.trials)
    assert optuna.trial.TrialState.FAIL not in states
    runs = [t.user_attrs["run"] for t in finished if "run" in t.user_attrs]
    assert len(runs) == len(set(runs))  # no trial ran twice into the same folder
    reported = [line for out, _ in outputs for line in out.splitlines() if line.startswith("trial ")]
    assert len(reported) == len(finished)  # every trial ran in exactly one worker
    assert (folder / "trials.csv").is_file() and (folder / "history.png").is_file()
    return study, folder


@pytest.mark.timeout(600)
def test_two_workers_share_one_study_and_the_best_yaml_reproduces(tmp_path, sweep_config):
    study, folder = _two_workers(tmp_path, sweep_config)
    best_yaml = folder / "best.yaml"
    assert best_yaml.read_text().startswith("# emolab run ")
    rerun = run(load_config(best_yaml), say=lambda _m: None)
    value = json.loads((rerun / "metrics.json").read_text())["validation"]["macro_f1"]
    assert abs(value - study.best_value) <= 0.005


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_share_a_postgresql_study(tmp_path, sweep_config):
    """PostgreSQL started by the test (needs Debian's postgresql server, a `postgres` user and psycopg2)."""
    import pwd
    import shutil
    import time

    import importlib.util

    driver = next((d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d)), None)
    if driver is None:
        pytest.skip("no PostgreSQL driver (pip install psycopg[binary] or psycopg2-binary)")
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user to run the server as")
    import tempfile
    from pathlib import Path

    data = Path(tempfile.mkdtemp(prefix="emolab-pg-"))  # outside pytest's root-only tmp folders
    data.chmod(0o755)
    shutil.chown(data, "postgres")
    port = 55433

    def as_postgres(command: str) -> None:
        subprocess.run(["su", "postgres", "-c", command], check=True, capture_output=True, timeout=120)

    as_postgres(f"initdb -D {data}/db -A trust -U emolab")
    as_postgres(f"pg_ctl -D {data}/db -o '-p {port} -k {data} -c listen_addresses=127.0.0.1' -l {data}/log -w start")
    try:
        time.sleep(1)
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "emolab", "-d", "postgres", "-c",
                        "create database optuna"], check=True, capture_output=True, timeout=60)
        study, _ = _two_workers(tmp_path, sweep_config, storage=f"postgresql+{driver}://emolab@127.0.0.1:{port}/optuna")
        assert len(study.trials) >= 8
    finally:
        as_postgres(f"pg_ctl -D {data}/db -m fast stop")
        shutil.rmtree(data, ignore_errors=True)



@pytest.mark.slow  # long end to end (30 s): make test-slow keeps the default run under 10 minutes
@pytest.mark.timeout(600)
def test_a_killed_worker_loses_only_its_running_trial(tmp_path):
    """Kill a worker in the middle of a trial; a second worker finds the trial's heartbeat stale, marks it
    failed, re-runs it (same parameters) and finishes the study: only the killed trial is lost."""
    import signal
    import time

    import numpy as np
    import optuna
    import pandas as pd

    from tests.conftest import make_texts

    texts, ys = make_texts(6000, seed=2)  # large enough that one trial takes seconds
    rng = np.random.default_rng(2)
    texts = [t + " " + " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "omega"], size=12)) for t in texts]
    data = tmp_path / "big.csv"
    pd.DataFrame({"sentence": texts, "emotion": ys}).to_csv(data, index=False)
    cfg = {"data": {"name": "csv", "path": str(data), "text_column": "sentence", "label_column": "emotion"},
           "model": {"name": "tfidf", "classifier": "svm", "char_ngrams": [1, 6], "max_features": None},
           "eval": {"timing": False, "report": False},
           "sweep": {"metric": "macro_f1", "dir": str(tmp_path / "sweeps"), "pruner": "none",
                     "space": {"model.C": {"type": "loguniform", "low": 0.01, "high": 10.0}}}}
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EMOLAB_SWEEP_HEARTBEAT": "1,3"}
    cmd = [sys.executable, "-m", "emolab.cli", "sweep", str(path), "--trials", "3"]
    url = f"sqlite:///{tmp_path / 'sweeps' / 'kill' / 'study.db'}"
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    running = None
    while running is None and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
        try:
            trials = optuna.load_study(study_name="kill", storage=url).trials
        except Exception:  # the study does not exist yet
            continue
        running = next((t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.params), None)
    assert running is not None, "the first worker never started a trial"
    time.sleep(1.5)  # in the middle of the trial, after at least one heartbeat
    first.send_signal(signal.SIGKILL)
    first.communicate()
    time.sleep(4)  # past the grace period: the killed trial's heartbeat is stale
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    study = optuna.load_study(study_name="kill", storage=url)
    by_state = {s: [t for t in study.trials if t.state == s] for s in optuna.trial.TrialState}
    failed = by_state[optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [running.number]  # the killed trial, and nothing else, was lost ...
    retried = [t for t in by_state[optuna.trial.TrialState.COMPLETE]
               if t.system_attrs.get("failed_trial") == running.number]
    assert len(retried) == 1 and retried[0].params == failed[0].params  # ... and re-run with its parameters
    assert len(by_state[optuna.trial.TrialState.COMPLETE]) >= 3
    assert not by_state[optuna.trial.TrialState.RUNNING] and not by_state[optuna.trial.TrialState.WAITING]


def test_a_sweep_prints_no_library_warnings(tmp_path, sweep_config):
    """Optuna's deprecation and experimental warnings (heartbeats, the stale-trial callback) stay off the console."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the warning filters a user has
    r = subprocess.run([sys.executable, "-m", "emolab.cli", "sweep", str(sweep_config), "--trials", "2"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Warning" not in r.stdout + r.stderr, r.stderr
