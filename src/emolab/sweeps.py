"""``emolab sweep CONFIG --trials N``: hyperparameter search with Optuna.

The search space sits in the config (``sweep.space``); the sampler is a seeded TPE, the pruner is fed
each epoch's validation metric, and the study lives in an RDB storage (a SQLite file in the sweep
folder by default, or any URL Optuna accepts, e.g. PostgreSQL) so several workers on several machines
can share one study: each worker runs ``emolab sweep`` with the same ``--storage`` and study name, and
together they stop at N finished trials. Heartbeats mark a killed worker's running trial as failed and
re-queue it, so a killed worker loses at most that trial.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import yaml

from emolab.config import MOVED_KEYS, RunConfig, config_from_dict, dump_config
from emolab.errors import ConfigError, EmolabError
from emolab.rundir import open_run

SPACE_TYPES = ("loguniform", "uniform", "int", "categorical")


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover
        raise EmolabError("sweeps need Optuna", hint="pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def validate_space(cfg: RunConfig, source: str) -> dict[str, dict]:
    """Every problem with ``sweep.space`` at once: unknown keys, unknown types, missing bounds."""
    space = cfg.sweep.space
    problems = [] if space else ["sweep.space: empty; declare at least one dotted key, e.g. train.lr"]
    raw = cfg.to_dict()
    for key, spec in space.items():
        node: Any = raw
        path = key.split(".")
        if tuple(path) in MOVED_KEYS:  # an older sweep's train.<key>: its override moves to the key's new place
            path = [MOVED_KEYS[tuple(path)], path[1]]
        for part in path:
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            problems.append(f"sweep.space.{key}: no such config key")
        if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
            problems.append(f"sweep.space.{key}: type must be one of {', '.join(SPACE_TYPES)}")
            continue
        need = ("choices",) if spec["type"] == "categorical" else ("low", "high")
        problems += [f"sweep.space.{key}: missing {n}" for n in need if n not in spec]
    if problems:
        raise ConfigError(source, problems)
    return space


def suggest(trial, space: dict[str, dict]) -> dict[str, Any]:
    values = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "loguniform":
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=True)
        elif kind == "uniform":
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]))
        elif kind == "int":
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)))
        else:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
    return values


def _overrides(values: dict[str, Any]) -> list[str]:
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in values.items()]


def sweep(config_path: str | Path, raw: dict, cfg: RunConfig, *, trials: int, storage: str | None = None,
          study_name: str | None = None, say=print) -> dict[str, Any]:
    """Run trials until the study holds ``trials`` finished ones; write the trials table, best config, plots."""
    optuna = _optuna()
    from emolab.pipeline import run
    from emolab.rundir import atomic_write

    source = str(config_path)
    space = validate_space(cfg, source)
    name = study_name or Path(config_path).stem
    folder = Path(cfg.sweep.dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    url = storage or cfg.sweep.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=1) if cfg.sweep.pruner == "median" else \
        optuna.pruners.NopPruner()
    study = _open_study(optuna, url, name, cfg, pruner)
    metric = cfg.sweep.metric

    def objective(trial) -> float:
        values = suggest(trial, space)
        overrides = _overrides(values) + [f"output.dir={folder / 'trials'}", f"output.name=trial-{trial.number:04d}",
                                          "output.overwrite=true", "eval.report=false", "eval.timing=false"]
        trial_cfg = config_from_dict(raw, source=source, overrides=overrides)

        def report(record) -> None:
            value = record.validation.get(metric)
            if value is None:
                return
            trial.report(value, record.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {record.epoch}: {metric} {value:.4f}")

        try:
            out = run(trial_cfg, say=lambda _m: None, on_epoch=report)
        except optuna.TrialPruned as exc:
            shutil.rmtree(folder / "trials" / f"trial-{trial.number:04d}.partial", ignore_errors=True)
            say(f"trial {trial.number}: pruned ({exc})")
            raise
        value = open_run(out).metrics["validation"][metric]
        trial.set_user_attr("run", str(out))
        say(f"trial {trial.number}: {metric} {value:.4f}  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float)
                                                                      else f"{k}={v}" for k, v in values.items()))
        return value

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(trials, states=done)],
                   n_trials=trials, catch=())
    return write_outputs(study, raw, source, folder, name, say=say, atomic_write=atomic_write)


def _open_study(optuna, url: str, name: str, cfg: RunConfig, pruner):
    """Create or join the study. Workers that start together may race to create the schema: the loser
    retries, then joins the study the winner made."""
    import time

    from sqlalchemy.exc import SQLAlchemyError

    import os

    # seconds between heartbeats, and of silence after which a running trial counts as lost
    interval, grace = (int(x) for x in os.environ.get("EMOLAB_SWEEP_HEARTBEAT", "30,120").split(","))
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental; emolab relies on them knowingly
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                rdb = optuna.storages.RDBStorage(
                    url, heartbeat_interval=interval, grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                    engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)
            return optuna.create_study(study_name=name, storage=rdb, direction=cfg.sweep.direction,
                                       load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=cfg.seed),
                                       pruner=pruner)
        except SQLAlchemyError:
            if attempt == 5:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def write_outputs(study, raw: dict, source: str, folder: Path, name: str, *, say, atomic_write) -> dict[str, Any]:
    optuna = _optuna()
    table = study.trials_dataframe()
    atomic_write(folder / "trials.csv", table.to_csv(index=False))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise EmolabError(f"sweep {name!r}: no trial completed", hint=f"see {folder / 'trials'}")
    best = study.best_trial
    cfg = config_from_dict(raw, source=source, overrides=_overrides(best.params) + [f"output.name={name}-best"])
    header = (f"# emolab run {folder / 'best.yaml'}\n# The best trial ({best.number}, validation "
              f"{study.best_value:.4f}) of sweep {name!r}, as a runnable config.\n")
    atomic_write(folder / "best.yaml", header + dump_config(cfg))
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from optuna.visualization import matplotlib as ovm

        ax = ovm.plot_optimization_history(study)
        ax.figure.savefig(folder / "history.png", dpi=100, bbox_inches="tight")
        if len(best.params) > 1 and len(complete) > 2:
            try:
                ax = ovm.plot_param_importances(study)
                ax.figure.savefig(folder / "importance.png", dpi=100, bbox_inches="tight")
            except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. all trials scored the same
                pass
    states = table["state"].value_counts().to_dict() if len(table) else {}
    say(f"best trial {best.number}: {study.best_value:.4f} {best.params}; trials {states}; wrote {folder}")
    return {"best_value": study.best_value, "best_params": best.params, "best_trial": best.number,
            "states": states, "folder": str(folder)}
