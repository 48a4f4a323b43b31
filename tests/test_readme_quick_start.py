"""The README's quick start, run as written (marked slow: it trains the TF-IDF model and runs the reference CNN
on the real datasets, ~2 minutes): every command in its code block, from a fresh folder with the project's
`.venv` and `configs/`, exits 0; the server answers its demo page and a prediction; the photo comes back
annotated where the README says."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```\n(.*?)```", readme, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not os.environ.get("EMOLAB_DATA_DIR") and not (ROOT.parent / "shared" / "data").is_dir(),
                    reason="needs the datasets (EMOLAB_DATA_DIR)")
def test_the_readme_quick_start_runs_as_written(tmp_path):
    commands = quick_start_commands()
    assert len(commands) == 5 and all(c.startswith(".venv/bin/emolab ") for c in commands)
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the README's paths start at .venv/
    env = {**os.environ, "EMOLAB_DATA_DIR": os.environ.get("EMOLAB_DATA_DIR", str(ROOT.parent / "shared" / "data")),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for command in commands:
        if " serve " in command:
            port = _free_port()
            server = subprocess.Popen(f"{command} --port {port}", shell=True, cwd=tmp_path, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                url = f"http://127.0.0.1:{port}"
                for _ in range(240):
                    try:
                        if httpx.get(url + "/ready", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.5)
                assert "<html" in httpx.get(url + "/", timeout=10).text.lower()
                answer = httpx.post(url + "/v1/models/emotion-tfidf/predict", json={"inputs": "i feel great"},
                                    timeout=10)
                assert answer.status_code == 200 and answer.json()[0][0]["label"] == "joy"
            finally:
                os.killpg(server.pid, 15)
                server.wait(timeout=30)
            continue
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert (tmp_path / "runs" / "emotion-tfidf" / "report.html").is_file()
    named = re.search(r"\(`(out/[^`]+)`\)", (ROOT / "README.md").read_text(encoding="utf-8")).group(1)
    assert (tmp_path / named).is_file(), sorted(p.name for p in (tmp_path / "out").iterdir())
    assert shlex.split(commands[-1])[3].endswith("grace_hopper.jpg")
