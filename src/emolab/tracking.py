"""Optional experiment trackers beside the run directory: TensorBoard, MLflow and W&B (offline).

Chosen in ``output.trackers``. A tracker whose package is missing or whose server cannot be reached
gives one warning and is switched off; the run goes on and the run directory keeps everything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from emolab.errors import unknown_name

Say = Callable[[str], None]


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


class TensorBoardTracker:
    """Scalars per step (lr, grad norm, loss) and per epoch (train_* / val_*), and the hyperparameters."""

    def __init__(self, run_dir: Path, cfg: dict, name: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.hparams = {k: v for k, v in flatten(cfg).items() if v is not None and not isinstance(v, bool)
                        and k.split(".")[0] in ("model", "train", "data", "seed")}

    def steps(self, rows: list[dict]) -> None:
        for r in rows:
            for key in ("lr", "grad_norm", "loss"):
                if r.get(key) is not None:
                    self.writer.add_scalar(f"step/{key}", r[key], r["step"])

    def epoch(self, row: dict) -> None:
        for key, value in row.items():
            if key.startswith(("train_", "val_")) and isinstance(value, (int, float)):
                split, metric = key.split("_", 1)
                self.writer.add_scalar(f"{metric}/{'train' if split == 'train' else 'validation'}", value,
                                       row["epoch"])
        self.writer.flush()

    def finish(self, metrics: dict, run_dir: Path) -> None:
        final = {f"hparam/test_{k}": v for k, v in metrics.get("test", {}).items() if isinstance(v, float)}
        self.writer.add_hparams(self.hparams, final, run_name=".")
        self.writer.close()


class MLflowTracker:
    """Params, per-epoch metrics, final metrics and the run directory (model included) as artifacts."""

    def __init__(self, run_dir: Path, cfg: dict, name: str):
        import mlflow

        out = cfg["output"]
        uri = out.get("mlflow_uri") or f"sqlite:///{Path('mlruns.db').resolve()}"
        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(out.get("experiment") or cfg["data"]["name"])
        self.run = mlflow.start_run(run_name=name)
        mlflow.log_params({k[:250]: str(v)[:500] for k, v in flatten(cfg).items()})

    def steps(self, rows: list[dict]) -> None:
        from mlflow.entities import Metric

        import time

        now = int(time.time() * 1000)
        batch = [Metric(f"step_{k}", float(r[k]), now, r["step"]) for r in rows for k in ("lr", "grad_norm", "loss")
                 if r.get(k) is not None]
        for i in range(0, len(batch), 900):
            self.mlflow.tracking.MlflowClient().log_batch(self.run.info.run_id, metrics=batch[i:i + 900])

    def epoch(self, row: dict) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in row.items()
                                 if k.startswith(("train_", "val_")) and isinstance(v, (int, float))},
                                step=row["epoch"])

    def finish(self, metrics: dict, run_dir: Path) -> None:
        for split in ("validation", "test"):
            self.mlflow.log_metrics({f"{split}_{k}": float(v) for k, v in metrics.get(split, {}).items()
                                     if isinstance(v, float)})
        self.mlflow.log_artifacts(str(run_dir), artifact_path="run")
        self.mlflow.end_run()


class WandbTracker:
    """Weights & Biases in offline mode (sync later with `wandb sync`)."""

    def __init__(self, run_dir: Path, cfg: dict, name: str):
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        self.wandb = wandb
        self.run = wandb.init(project=cfg["output"].get("experiment") or "emolab", name=name, dir=str(run_dir),
                              config=flatten(cfg), mode="offline")

    def steps(self, rows: list[dict]) -> None:
        for r in rows:
            self.run.log({f"step/{k}": r[k] for k in ("lr", "grad_norm", "loss") if r.get(k) is not None})

    def epoch(self, row: dict) -> None:
        self.run.log({k: v for k, v in row.items() if isinstance(v, (int, float))})

    def finish(self, metrics: dict, run_dir: Path) -> None:
        self.run.summary.update({f"test_{k}": v for k, v in metrics.get("test", {}).items() if isinstance(v, float)})
        self.run.finish()


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}
INSTALL = {"tensorboard": "pip install tensorboard", "mlflow": "pip install mlflow-skinny (or mlflow)",
           "wandb": "pip install wandb"}


class Trackers:
    """Fans each event out to the chosen trackers; a failing tracker warns once and is dropped."""

    def __init__(self, names: list[str], run_dir: Path, cfg: dict, name: str, say: Say):
        self.say = say
        self.active: dict[str, Any] = {}
        for n in names:
            if n not in TRACKERS:
                raise unknown_name("tracker (output.trackers)", n, list(TRACKERS))
            try:
                self.active[n] = TRACKERS[n](run_dir, cfg, name)
            except ImportError:
                say(f"warning: tracker {n!r} is not installed ({INSTALL[n]}); the run goes on without it")
            except Exception as exc:  # an unreachable server, bad credentials, ...
                say(f"warning: tracker {n!r} could not start ({type(exc).__name__}: {exc}); the run goes on "
                    "without it")

    def _each(self, method: str, *args) -> None:
        for n, tracker in list(self.active.items()):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:
                self.say(f"warning: tracker {n!r} failed ({type(exc).__name__}: {exc}); it is switched off, the "
                         "run directory keeps everything")
                del self.active[n]

    def steps(self, rows: list[dict]) -> None:
        if rows:
            self._each("steps", rows)

    def epoch(self, row: dict) -> None:
        self._each("epoch", row)

    def finish(self, metrics: dict, run_dir: Path) -> None:
        self._each("finish", metrics, run_dir)
