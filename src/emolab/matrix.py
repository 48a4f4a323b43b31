"""Matrix runs: a config whose ``matrix:`` lists values for dotted keys (models x pooling heads x
schedules, ...) runs every combination into ``runs/<name>/`` and ends with their leaderboard; ``matrix:
{cells: [...]}`` runs exactly the cells listed (an ablation that varies one factor at a time)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from emolab.config import RunConfig, config_from_dict
from emolab.errors import ConfigError


def _value_text(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _slug(v: Any) -> str:
    text = str(v).rstrip("/").split("/")[-1]
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)


def _combinations(matrix: dict, problems: list[str]) -> list[tuple[str, dict]]:
    """(cell name, {dotted key: value}) for every cell: the product of ``key: [values]``, or with
    ``cells: [{name: ..., key: value, ...}, ...]`` exactly the cells listed (one factor at a time)."""
    if "cells" in matrix:
        listed = matrix["cells"]
        if len(matrix) > 1 or not isinstance(listed, list) or not listed or \
                not all(isinstance(c, dict) for c in listed):
            problems.append("matrix.cells: expected a list of mappings ({name: ..., dotted.key: value}) and no "
                            "other matrix keys")
            return []
        out = []
        for i, cell in enumerate(listed):
            values = {k: v for k, v in cell.items() if k != "name"}
            name = str(cell.get("name") or "-".join(_slug(v) for v in values.values()) or f"cell{i}")
            out.append((name, values))
        names = [n for n, _ in out]
        problems += [f"matrix.cells: the name {n!r} is used twice" for n in set(names) if names.count(n) > 1]
        return out
    problems += [f"matrix.{k}: expected a list of values, got {v!r}" for k, v in matrix.items()
                 if not isinstance(v, list) or not v]
    if problems:
        return []
    return [("-".join(_slug(v) for v in combo), dict(zip(matrix, combo)))
            for combo in itertools.product(*matrix.values())]


def cells(cfg: RunConfig, raw: dict, source: str) -> list[tuple[str, RunConfig]]:
    """Every combination as (cell name, resolved config); all invalid values reported at once."""
    problems: list[str] = []
    combos = _combinations(cfg.matrix, problems)
    if problems:
        raise ConfigError(source, problems)
    base = {k: v for k, v in raw.items() if k != "matrix"}
    name = cfg.output.name or Path(source).stem
    out = []
    for cell, values in combos:
        overrides = [f"{k}={_value_text(v)}" for k, v in values.items()]
        try:
            one = config_from_dict(base, source=source, overrides=overrides)
            one.output.dir, one.output.name = str(Path(cfg.output.dir) / name), cell  # names stay text ("1.0")
            one.seeds = list(cfg.seeds)  # `--seeds N` is not in the raw config
            out.append((cell, one))
        except ConfigError as exc:
            problems += [f"matrix cell {cell}: {p}" for p in exc.problems]
    if problems:
        raise ConfigError(source, problems)
    return out


def run_matrix(cfg: RunConfig, raw: dict, source: str, *, overwrite: bool = False, resume: bool = False,
               say=print) -> Path:
    """Every cell into ``runs/<name>/<cell>/`` (with seeds: ``runs/<name>/<cell>/seed-<s>/`` and a summary
    per cell), then one leaderboard over all of them."""
    from emolab.compare import compare
    from emolab.seed_spread import run_seeds, run_unless_finished

    todo = cells(cfg, raw, source)
    folder = Path(cfg.output.dir) / (cfg.output.name or Path(source).stem)
    say(f"matrix: {len(todo)} runs into {folder}")
    done = []
    for i, (cell, cell_cfg) in enumerate(todo, start=1):
        if cell_cfg.seeds:
            say(f"[{i}/{len(todo)}] {cell}")
            done += run_seeds(cell_cfg, overwrite=overwrite, resume=resume, say=say)
        else:  # a finished cell is kept, an interrupted one continues with --resume
            done.append(run_unless_finished(cell_cfg, f"[{i}/{len(todo)}] {cell}", overwrite=overwrite,
                                            resume=resume, say=say))
    from emolab.compare import terminal_text

    say(terminal_text(compare(done, folder, say=say)))
    return folder
