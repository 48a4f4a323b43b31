"""Data-parallel training with 2 CPU processes (gloo) through torchrun, checked against one process."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from emolab.pipeline import evaluate_run
from tests.test_training import tiny_config


@pytest.mark.timeout(600)
def test_two_process_run_matches_single_process_evaluation(tmp_path, tiny_csv):
    if shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("torchrun not installed beside this Python")
    cfg = tiny_config(tmp_path, tiny_csv, epochs=2)
    cfg["output"]["name"] = "ddp"
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", "2",
           "--master_port", "29533", "-m", "emolab.cli", "run", str(path)]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=540)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 11 and metrics["test"]["n"] == 12  # every example once
    # the validation metrics gathered from two processes during training equal a one-process evaluation
    # of the saved (best) weights
    best = max(history, key=lambda h: h["val_macro_f1"])
    single = evaluate_run(run, "validation", say=lambda _m: None)
    assert single["n"] == 11
    assert best["val_accuracy"] == pytest.approx(single["accuracy"])
    assert best["val_cross_entropy"] == pytest.approx(single["cross_entropy"], abs=1e-4)
    # 97 training examples in 13 batches of 8, shared by two processes: 7 steps per epoch each
    assert history[0]["step"] == 7
