"""The run directory: everything a run leaves behind, written atomically, never silently overwritten, and
read back through one reader.

A run is written into ``<dir>/<name>.partial/`` and renamed to ``<dir>/<name>/`` only when it has
finished, so a crash never leaves a half-written run that looks complete, and ``--resume`` knows
where to continue. If ``<name>`` already exists the new run becomes ``<name>-2`` (``-3``, ...)
unless ``--overwrite`` is given. :class:`RunDir` writes a run; :func:`open_run` reads one (config, model
card, metrics, history, predictions, the model itself) for the pipeline, ``compare``, reports and analysis.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from emolab import runfiles
from emolab.calibration import Calibration
from emolab.config import RunConfig, config_from_saved, read_yaml
from emolab.errors import EmolabError
from emolab.outputs import atomic_write, check_name, writable_folder
from emolab.models.registry import MODEL_FILE, load_model, model_card
from emolab.records import ModelCard, Predictions

PACKAGES = ("emolab", "torch", "transformers", "tokenizers", "accelerate", "scikit-learn", "numpy", "pandas",
            "safetensors")


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default)


def environment() -> dict[str, Any]:
    """Package versions, Python, OS and hardware, for the manifest."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    hw: dict[str, Any] = {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                          "processor": platform.processor() or platform.machine()}
    if "torch" in sys.modules or versions.get("torch"):
        try:
            import torch

            hw["torch_threads"] = torch.get_num_threads()
            if torch.cuda.is_available():
                hw["gpu"] = torch.cuda.get_device_name(0)
                hw["gpu_count"] = torch.cuda.device_count()
        except Exception:  # pragma: no cover - a broken torch install must not stop the manifest
            pass
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
            "hardware": hw}


def git_revision(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def predictions_csv(preds: Predictions, *, thresholds: Any = 0.5) -> str:
    """CSV with id, input, true label, predicted label and one probability column per label."""
    names = preds.labels.names
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "input", "true_label", "pred_label", "confidence"] + [f"p_{n}" for n in names])
    inputs = preds.inputs if preds.inputs is not None else [""] * len(preds.ids)
    if preds.labels.multi_label:
        pred_sets = preds.probs >= np.broadcast_to(np.asarray(thresholds, dtype=float), (len(names),))
    for i in range(len(preds.ids)):
        p = preds.probs[i]
        if preds.labels.multi_label:
            true = ";".join(n for n, t in zip(names, preds.y_true[i]) if t)
            pred = ";".join(n for n, t in zip(names, pred_sets[i]) if t)
        else:
            true, pred = names[int(preds.y_true[i])], names[int(p.argmax())]
        writer.writerow([preds.ids[i], inputs[i], true, pred, f"{p.max():.6f}"] + [f"{x:.6f}" for x in p])
    return buf.getvalue()


class RunDir:
    """Writer for one run's folder; see the module docstring for the naming rules."""

    def __init__(self, final: Path, *, overwrite: bool = False):
        self.final = final
        self.path = final.with_name(final.name + ".partial")
        self.overwrite = overwrite
        self.started = time.time()
        self.timings: dict[str, float] = {}

    @classmethod
    def create(cls, root: str | Path, name: str, *, overwrite: bool = False, resume: bool = False) -> RunDir:
        root = writable_folder(Path(root), what=f"runs in output.dir {root}")
        final = root / check_name(name)
        partial = final.with_name(name + ".partial")
        if resume:
            if not partial.is_dir():
                raise EmolabError(f"nothing to resume: {partial} does not exist",
                                  hint="--resume continues an interrupted run; run without it to start one")
            return cls(final, overwrite=True)
        if partial.exists():
            if not overwrite:
                raise EmolabError(f"an interrupted run of {name!r} exists at {partial}",
                                  hint="add --resume to continue it, or --overwrite to start again")
            shutil.rmtree(partial)
        if final.exists() and not overwrite:
            i = 2
            while (root / f"{name}-{i}").exists() or (root / f"{name}-{i}.partial").exists():
                i += 1
            final = root / f"{name}-{i}"
        run = cls(final, overwrite=overwrite)
        run.path.mkdir(parents=True)
        return run

    @property
    def name(self) -> str:
        return self.final.name

    def file(self, relpath: str) -> Path:
        p = self.path / relpath
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_text(self, relpath: str, text: str) -> Path:
        p = self.path / relpath
        atomic_write(p, text)
        return p

    def write_json(self, relpath: str, obj: Any) -> Path:
        return self.write_text(relpath, to_json(obj) + "\n")

    def write_history(self, records: list) -> None:
        self.write_text(runfiles.HISTORY, "".join(json.dumps(r.to_dict(), default=_json_default) + "\n"
                                                 for r in records))

    def append_steps(self, rows: list[dict], *, after_step: int | None = None) -> None:
        """Add optimizer-step rows to ``steps.jsonl``; ``after_step`` first drops rows past a resumed checkpoint."""
        path = self.path / runfiles.STEPS
        kept = path.read_text().splitlines() if path.is_file() else []
        if after_step is not None:
            kept = [ln for ln in kept if json.loads(ln)["step"] <= after_step]
        self.write_text(runfiles.STEPS, "".join(ln + "\n" for ln in kept) +
                        "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))

    def write_predictions(self, preds: Predictions, *, thresholds: Any = 0.5) -> None:
        self.write_text(runfiles.predictions_csv(preds.split), predictions_csv(preds, thresholds=thresholds))
        np.savez_compressed(self.file(runfiles.predictions_npz(preds.split)), ids=preds.ids.astype(str),
                            y_true=preds.y_true, probs=preds.probs)

    def finalize(self) -> Path:
        """Rename ``<name>.partial`` to ``<name>`` (replacing an old run only with ``overwrite``)."""
        if self.final.exists():
            if not self.overwrite:  # pragma: no cover - create() chose a free name
                raise EmolabError(f"{self.final} exists", hint="use --overwrite")
            trash = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, trash)
            os.replace(self.path, self.final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.path, self.final)
        self.path = self.final
        return self.final


# --- reading a run ----------------------------------------------------------------------------------------


class Run:
    """A run directory, read: its config, model card, metrics, history and predictions, each read once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / runfiles.CONFIG).is_file():
            raise EmolabError(f"{path} is not a run directory (no config.yaml)",
                              hint="give a folder written by `emolab run`, e.g. runs/emotion-tfidf")

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".partial")  # a run reports before its folder gets its final name

    def json(self, relpath: str) -> Any:
        """A JSON file of the run, or None when the run has none."""
        path = self.path / relpath
        return json.loads(path.read_text()) if path.is_file() else None

    def jsonl(self, relpath: str) -> list[dict]:
        path = self.path / relpath
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []

    def has(self, relpath: str) -> bool:
        return (self.path / relpath).is_file()

    @cached_property
    def raw_config(self) -> dict:
        return read_yaml(self.path / runfiles.CONFIG) or {}

    @cached_property
    def config(self) -> RunConfig:
        return config_from_saved(self.raw_config, source=str(self.path / runfiles.CONFIG))

    @cached_property
    def card(self) -> ModelCard:
        if not (self.path / runfiles.MODEL / MODEL_FILE).is_file():
            raise EmolabError(f"{self.path} holds no saved model (model/{MODEL_FILE} missing)",
                              hint="the run did not finish training; run it again or --resume it")
        return model_card(self.path)

    @cached_property
    def metrics(self) -> dict:
        return self.json(runfiles.METRICS) or {}

    @cached_property
    def manifest(self) -> dict:
        return self.json(runfiles.MANIFEST) or {}

    @cached_property
    def history(self) -> list[dict]:
        return self.jsonl(runfiles.HISTORY)

    def predictions(self, split: str) -> Predictions:
        """The saved predictions of one split (no model, no torch); image inputs are re-read by id."""
        import pandas as pd

        npz_file = self.path / runfiles.predictions_npz(split)
        if not npz_file.is_file():
            raise EmolabError(f"{self.path} has no predictions for split {split!r}",
                              hint="evaluate that split first (eval.splits in the config), or pick another --split")
        npz = np.load(npz_file)
        table = pd.read_csv(self.path / runfiles.predictions_csv(split), dtype={"input": str}, keep_default_na=False)
        texts = table["input"].tolist()
        inputs = None if self.card.image or not any(texts) else texts
        return Predictions(ids=npz["ids"], inputs=inputs, y_true=npz["y_true"], probs=npz["probs"],
                           labels=self.card.labels, split=split)

    def model(self):
        """The trained model, loaded from ``model/`` (safetensors / ONNX; no network)."""
        return load_model(self.path / runfiles.MODEL)


def run_of(folder: str | Path) -> Run | None:
    """The finished run a model folder belongs to: the folder itself, or the run above a model folder inside
    it (``model/``, ``compression/models/NAME``, ``exports/NAME``); None for a model folder on its own."""
    folder = Path(folder)
    for candidate in (folder, *list(folder.parents)[:3]):
        if (candidate / runfiles.METRICS).is_file() and (candidate / runfiles.CONFIG).is_file():
            return Run(candidate)
    return None


def decision_thresholds(folder: str | Path, names: tuple[str, ...], *, calibrated: bool = False) -> np.ndarray:
    """The thresholds a multi-label model decides at: those tuned on validation (the run's ``metrics.json``),
    else the run's ``eval.threshold``, else 0.5. ``folder`` is a run or a model folder inside one. These apply to
    the run's saved (uncalibrated) predictions; ``calibrated`` maps them onto the scale of the folder's model
    when its card records a calibration (what a loaded model's ``predict_proba`` returns), deciding the same."""
    run = run_of(folder)
    if run is None:
        thresholds = np.full(len(names), 0.5)
    else:
        tuned = run.metrics.get("tuned_thresholds") or {}
        default = float((run.raw_config.get("eval") or {}).get("threshold", 0.5))
        thresholds = np.array([float(tuned.get(n, default)) for n in names])
    calibration = Calibration.of_card(model_card(folder).extra) if calibrated else None
    return thresholds if calibration is None else np.asarray(calibration.thresholds(thresholds))


def open_run(path: str | Path) -> Run:
    return Run(path)


def load_run_config(run_path: str | Path) -> RunConfig:
    """The resolved config a finished run was trained with."""
    return Run(run_path).config


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
