"""Run configuration: dataclasses with every default in one place, YAML loading, dotted overrides.

A config file has the sections ``data``, ``model``, ``train``, ``eval``, ``output`` and a top-level
``seed``. The ``data`` and ``model`` sections belong to the dataset and the model they name: each registered
dataset and model declares its own config dataclass (:mod:`emolab.data.registry`,
:mod:`emolab.models.registry`), so a section holds only the keys that mean something to it. Unknown keys
and names are refused (with "did you mean" and the valid choices), and every problem in a file, types,
ranges and names alike, is reported at once as a :class:`~emolab.errors.ConfigError`, before any data is
loaded or any model built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from emolab.data.registry import DataConfig, dataset_config_class, list_datasets
from emolab.errors import ConfigError, unknown_name_message
from emolab.models.registry import ModelConfig, list_models, model_config_class
from emolab.models.vision_config import TTA_MODES
from emolab.sections import build, owned, yaml_numbers

SCHEDULERS = ("linear", "cosine", "constant", "plateau", "onecycle")
DEFAULT_MODEL = "tfidf"


@dataclass
class TrainConfig:
    epochs: int = 3  # passes over the training set
    batch_size: int = 32  # training examples per optimizer step (per process)
    lr: float = 5e-5  # peak learning rate
    weight_decay: float = 0.01  # decoupled weight decay (AdamW) or L2 penalty (SGD)
    optimizer: Literal["adamw", "sgd"] = "adamw"  # AdamW, or SGD with Nesterov momentum
    momentum: float = 0.9  # sgd (Nesterov)
    # learning-rate schedule after warmup; plateau: ReduceLROnPlateau on the validation metric
    scheduler: Literal["linear", "cosine", "constant", "plateau", "onecycle"] = "linear"
    warmup_ratio: float = 0.06  # share of the optimizer steps spent warming the learning rate up
    grad_clip: Optional[float] = 1.0  # clip the gradient norm to this; None: no clipping
    grad_accum_steps: int = 1  # batches accumulated per optimizer step
    label_smoothing: float = 0.0  # share of the target spread over the other labels
    class_weights: bool | Literal["balanced", "sqrt"] = False  # true = "balanced" (n / (classes * count)); "sqrt": its square root
    ema_decay: Optional[float] = None  # keep an exponential moving average of the weights (e.g. 0.999); it is evaluated and saved
    early_stopping_metric: str = "macro_f1"  # any validation metric; loss-like ones are minimised
    patience: Optional[int] = None  # epochs without improvement before stopping; None: never stop early
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"  # auto: bf16/fp16 on GPU, fp32 on CPU
    max_steps: Optional[int] = None  # stop after this many optimizer steps (smoke runs, tests)
    log_every: int = 10  # optimizer steps between progress-bar updates
    num_threads: Optional[int] = None  # torch CPU threads; None: torch's default
    keep_checkpoints: bool = False  # keep checkpoints/ (optimizer state for --resume) after a finished run


@dataclass
class EvalConfig:
    splits: list = field(default_factory=lambda: ["validation", "test"])  # splits scored at the end of a run
    batch_size: int = 64  # examples per prediction batch
    threshold: float = 0.5  # multi-label decision threshold
    tune_thresholds: bool = True  # multi-label: per-label thresholds tuned on validation
    ece_bins: int = 15  # confidence bins of the expected calibration error
    timing: bool = True  # inference timing at batch 1 and 64
    timing_examples: int = 200  # examples timed (from the last split) when timing is on
    tta: Literal[TTA_MODES] = "none"  # image models: average over flips / 10 crops / a crop grid
    bootstrap: int = 1000  # resamples for the 95% intervals on every metric (seeded by `seed`); 0 turns them off
    notebook: bool = False  # also write report.ipynb (executed, with outputs; `emolab report RUN --notebook`)
    report: bool = True  # analyse the test errors and write report.html / report.md at the end of a run
    calibrate: Literal["none", "auto", "temperature", "platt"] = "none"  # fit on the validation split: temperature (one per label when multi-label), platt (multi-label: slope and offset per label) or auto (temperature; platt for multi-label runs); kept in the model card and applied wherever scores leave emolab (`emolab calibrate RUN`)
    robustness: bool = False  # also score the test split under the perturbations of `emolab robustness` (default severities) and add the table to the report


@dataclass
class OutputConfig:
    dir: str = "runs"  # folder that holds the run directories
    name: Optional[str] = None  # default: the config file's stem
    overwrite: bool = False  # replace an existing run of that name (default: write <name>-2)
    trackers: list = field(default_factory=list)  # any of: tensorboard, mlflow, wandb (the run directory always)
    mlflow_uri: Optional[str] = None  # default: sqlite:///mlruns.db in the current folder; any tracking URI
    experiment: Optional[str] = None  # MLflow / W&B experiment (project); default: the dataset name


@dataclass
class SweepConfig:
    metric: str = "macro_f1"  # the validation metric a sweep optimises
    direction: Literal["maximize", "minimize"] = "maximize"  # whether a higher metric is better
    # dotted config key -> {type: loguniform | uniform | int | categorical, low, high, choices}
    space: dict = field(default_factory=dict)
    pruner: Literal["median", "none"] = "median"  # fed the per-epoch validation metric
    storage: Optional[str] = None  # any RDB URL Optuna accepts; default sqlite in the sweep folder
    dir: str = "sweeps"  # folder that holds the sweep directories


def _default_model() -> ModelConfig:
    return model_config_class(DEFAULT_MODEL)(name=DEFAULT_MODEL)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)  # the dataset's own section (emolab.data)
    model: ModelConfig = field(default_factory=_default_model)  # the model's own section (emolab.models)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # dotted key -> list of values; `emolab run` then runs every combination and writes a leaderboard
    matrix: dict = field(default_factory=dict)
    seed: int = 42  # seeds Python, NumPy and PyTorch, data splits and subsamples, bootstrap intervals
    # run the config once per seed into runs/<name>/seed-<s>/ and summarise the spread (`emolab run --seeds N`)
    seeds: list = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- loading -------------------------------------------------------------------------------------

MAX_YAML_NODES = 100_000  # a config is a few hundred values; aliases must not expand it past this (YAML bombs)
MAX_YAML_BYTES = 1_000_000


class _YamlProblem(Exception):
    """A YAML document emolab refuses though YAML allows it (duplicate keys, alias bombs, cycles)."""


def _check_nodes(loader: yaml.SafeLoader, root: yaml.Node) -> None:
    """Refuse a node graph whose aliases expand it past ``MAX_YAML_NODES`` (a "billion laughs" bomb, which
    PyYAML would build as shared objects that any copy of the config multiplies), a recursive alias, and a
    mapping that repeats a key (PyYAML would keep the last value silently)."""
    size: dict[int, int] = {}
    busy: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative: deep nesting must not exhaust Python's stack here
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            busy.discard(key)
            if isinstance(node, yaml.MappingNode):
                parts = [n for pair in node.value for n in pair]
            else:
                parts = node.value
            size[key] = 1 + sum(size[id(n)] for n in parts)
            if size[key] > MAX_YAML_NODES:
                raise _YamlProblem(f"the document expands to more than {MAX_YAML_NODES:,} values through its "
                                   "anchors and aliases (a YAML bomb?)")
            continue
        if key in size:
            continue
        if key in busy:
            raise _YamlProblem(f"line {node.start_mark.line + 1}: an alias refers to a collection that contains it")
        if isinstance(node, yaml.ScalarNode):
            size[key] = 1
            continue
        busy.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    name = loader.construct_object(key_node)
                    if name in seen:
                        raise _YamlProblem(f"line {key_node.start_mark.line + 1}: duplicate key {name!r} (first "
                                           f"on line {seen[name]}); YAML would keep only the last value")
                    seen[name] = key_node.start_mark.line + 1
                stack += [(key_node, False), (value_node, False)]
        else:
            stack += [(n, False) for n in node.value]


def _safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses what :func:`_check_nodes` refuses. Every failure is a
    :class:`_YamlProblem` whose message says where."""
    if len(text) > MAX_YAML_BYTES:
        raise _YamlProblem(f"{len(text):,} characters; a config holds at most {MAX_YAML_BYTES:,}")
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # a control character
        raise _YamlProblem(f"not valid YAML: {exc}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(loader, node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _YamlProblem(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise _YamlProblem("nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a date like 2024-13-45 that the timestamp rule reads
        raise _YamlProblem(f"a value YAML cannot read: {exc}") from None
    finally:
        loader.dispose()


_SECTIONS = {  # base class -> (registered names, name -> the section's own class, the name when none is given)
    DataConfig: (list_datasets, dataset_config_class, "emotion"),
    ModelConfig: (list_models, model_config_class, DEFAULT_MODEL),
}
_SECTION_BASES = {"data": DataConfig, "model": ModelConfig}  # the sections a registered name picks the class of


def _section_class(base: type, raw: dict, prefix: str, problems: list[str]) -> tuple[type, dict] | None:
    """The dataclass of a ``data`` / ``model`` section: the one its registered ``name`` declares."""
    names, lookup, default = _SECTIONS[base]
    name = raw.get("name", default)
    if not isinstance(name, str):
        problems.append(f"{prefix}name: expected a string, got {name!r}")
        return None
    if name not in names():
        problems.append(f"{prefix}name: " + unknown_name_message(prefix.rstrip(".").replace("data", "dataset"),
                                                                 name, names()))
        return None
    return lookup(name), {**raw, "name": name}


def _pick_section(cls: type, raw: dict, prefix: str, problems: list[str]) -> tuple[type, dict] | None:
    """The class a mapping of the run config becomes: a ``data`` / ``model`` section the one its ``name``
    declares (:func:`_section_class`), any other the class of its field."""
    return _section_class(cls, raw, prefix, problems) if cls in _SECTIONS else (cls, raw)


def _validate(cfg: RunConfig, problems: list[str]) -> None:
    """Value checks that types alone cannot express (each skips a value whose type is already wrong)."""
    positive = {
        "train.epochs": cfg.train.epochs,
        "train.batch_size": cfg.train.batch_size,
        "train.grad_accum_steps": cfg.train.grad_accum_steps,
        "eval.batch_size": cfg.eval.batch_size,
        "eval.ece_bins": cfg.eval.ece_bins,
        "eval.timing_examples": cfg.eval.timing_examples,
        "train.log_every": cfg.train.log_every,
        "train.max_steps": cfg.train.max_steps,  # these three may also be None (no limit / torch's default)
        "train.num_threads": cfg.train.num_threads,
        "train.patience": cfg.train.patience,  # 0 would stop after the first epoch whatever it scored
    }
    if isinstance(cfg.seed, int) and not 0 <= cfg.seed < 2 ** 32:
        problems.append(f"seed: must be in [0, 2**32) (NumPy's and PyTorch's seeding range), got {cfg.seed}")
    if isinstance(cfg.seeds, list):
        bad = [s for s in cfg.seeds if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < 2 ** 32]
        if bad:
            problems.append(f"seeds: expected a list of integers in [0, 2**32), e.g. [1, 2, 3], got {bad}")
        elif len(set(cfg.seeds)) != len(cfg.seeds):
            problems.append(f"seeds: {cfg.seeds} repeats a seed; each seed runs once")
    if isinstance(cfg.eval.bootstrap, int) and cfg.eval.bootstrap < 0:
        problems.append(f"eval.bootstrap: resamples must be 0 (off) or more, e.g. 1000, got {cfg.eval.bootstrap}")
    for key, value in positive.items():
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            problems.append(f"{key}: must be at least 1, got {value}")
    if isinstance(cfg.train.lr, float) and cfg.train.lr <= 0:
        problems.append(f"train.lr: must be positive, got {cfg.train.lr}")
    if isinstance(cfg.train.ema_decay, float) and not 0.0 < cfg.train.ema_decay < 1.0:
        problems.append(f"train.ema_decay: must be in (0, 1), e.g. 0.999, got {cfg.train.ema_decay}")
    for key, value in {"train.warmup_ratio": cfg.train.warmup_ratio,
                       "train.label_smoothing": cfg.train.label_smoothing}.items():
        if isinstance(value, float) and not 0.0 <= value < 1.0:
            problems.append(f"{key}: must be in [0, 1), got {value}")
    if isinstance(cfg.eval.splits, list):
        bad_splits = [s for s in cfg.eval.splits if s not in ("train", "validation", "test")]
        if bad_splits:
            problems.append(f"eval.splits: unknown split(s) {bad_splits}; use train, validation, test")
        if cfg.eval.calibrate != "none" and "validation" not in cfg.eval.splits:
            problems.append(f"eval.calibrate: {cfg.eval.calibrate} is fitted on the validation split's predictions; "
                            "add validation to eval.splits (or set eval.calibrate: none)")
    cfg.data.check(problems)
    cfg.model.check(problems)
    if cfg.model.name in list_models():
        if model_config_class(cfg.model.name).modality != "image" and cfg.eval.tta != "none":
            problems.append(f"eval.tta: test-time augmentation ({cfg.eval.tta!r}) applies to image models; "
                            f"{cfg.model.name!r} reads text: set eval.tta: none")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-5"`` -> ``(["train", "lr"], 3e-5)``; the value is parsed as YAML (and :func:`yaml_numbers`)."""
    if "=" not in text:
        raise ConfigError("--set", [f"{text!r}: expected KEY=VALUE, e.g. train.lr=3e-5"])
    key, value = text.split("=", 1)
    try:
        parsed = _safe_yaml(value) if value.strip() else None
    except _YamlProblem as exc:
        raise ConfigError("--set", [f"{text!r}: the value {value!r}: {exc}"]) from None
    return key.strip().split("."), yaml_numbers(parsed)


def _set_dotted(raw: dict, path: list[str], value: Any, problems: list[str]) -> None:
    node = raw
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            problems.append(f"{'.'.join(path)}: {part!r} is not a section")
            return
        node = child
    node[path[-1]] = value


# Keys that moved to the section that owns them: (old section, key) -> new section. A config file or a saved
# run that still sets the old place loads as before: the value moves to the new section when the class there
# has the key, and is dropped when it has not, as the key never applied to that model (channels-last to a text
# model or the MLP, length bucketing to an image model) and was ignored.
MOVED_KEYS = {("train", "channels_last"): "model", ("train", "group_by_length"): "model"}


def _move_old_keys(raw: dict, problems: list[str]) -> dict:
    """``raw`` with every key of :data:`MOVED_KEYS` in its new section (``raw`` itself is left unchanged)."""
    raw = dict(raw)
    for (old, key), new in MOVED_KEYS.items():
        section = raw.get(old)
        if not isinstance(section, dict) or key not in section:
            continue
        value = section[key]
        raw[old] = {k: v for k, v in section.items() if k != key}
        target = {} if raw.get(new) is None else raw[new]
        found = _section_class(_SECTION_BASES[new], target, f"{new}.", []) if isinstance(target, dict) else None
        if found is None or key not in {f.name for f in dataclasses.fields(found[0])}:
            continue  # the key never applied there (a wrong section or name is reported when it is built)
        if key in target and target[key] != value:
            problems.append(f"{old}.{key}: {value!r} here and {target[key]!r} in {new}.{key}, where the key has "
                            f"moved; set {new}.{key} only")
            continue
        raw[new] = {**target, key: value}
    return raw


def config_from_dict(raw: dict, *, source: str = "config", overrides: list[str] = ()) -> RunConfig:
    """The run config of the mapping ``raw`` (a config file's, or one built in Python) with ``--set`` overrides
    applied: keys and values checked, every problem raised at once as a :class:`ConfigError` naming ``source``."""
    problems: list[str] = []
    raw = yaml_numbers(dict(raw or {}))  # a copy of every mapping and list in it: the overrides leave ``raw`` as it was
    for text in overrides:
        path, value = parse_override(text)
        new = MOVED_KEYS.get(tuple(path))
        if new is not None and isinstance(raw.get(new), dict):  # an older sweep or matrix names the old place:
            raw[new] = {k: v for k, v in raw[new].items() if k != path[1]}  # its value wins, moved below
        _set_dotted(raw, path, value, problems)
    raw = _move_old_keys(raw, problems)
    cfg = build(RunConfig, raw, "", problems, pick=_pick_section)
    _validate(cfg, problems)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def config_from_saved(raw: dict, *, source: str) -> RunConfig:
    """The config of a finished run. Runs written before each model and dataset owned its section saved
    every family's keys in one flat ``model`` / ``data`` section and image augmentation under ``train``;
    keys the section's class does not own are dropped and ``train.augment`` moves to ``model.augment`` when the
    model's augmentation takes those keys (image models; a text model's old image defaults are dropped). Keys
    that moved since (:data:`MOVED_KEYS`) move as in any config."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (raw or {}).items()}
    augment = raw["train"].pop("augment", None) if isinstance(raw.get("train"), dict) else None
    for key, base in _SECTION_BASES.items():
        section = raw.get(key) or {}
        found = _section_class(base, section, f"{key}.", []) if isinstance(section, dict) else None
        if found is not None:
            cls, section = found
            names = {f.name for f in dataclasses.fields(cls)}
            if key == "model" and isinstance(augment, dict) and "augment" in names and "augment" not in section:
                target = next(f for f in dataclasses.fields(cls) if f.name == "augment").default_factory()
                if set(augment) <= {f.name for f in dataclasses.fields(target)}:  # image keys to an image model
                    section["augment"] = augment
            raw[key] = owned(cls, section)
    return config_from_dict(raw, source=source)


def read_yaml(path: str | Path) -> Any:
    """A YAML file's data, refusing duplicate keys, alias bombs and recursive aliases (:func:`_safe_yaml`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), [f"file not found: {path}"])
    try:
        return _safe_yaml(path.read_text(encoding="utf-8"))
    except _YamlProblem as exc:
        raise ConfigError(str(path), [str(exc)]) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc}"]) from None


def load_raw(path: str | Path, overrides: list[str] = ()) -> dict:
    """The YAML mapping of a config file with ``--set`` overrides applied (not yet validated)."""
    path = Path(path)
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["the top level must be a mapping with data/model/train/eval/output/seed"])
    problems: list[str] = []
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(raw, key, value, problems)
    if problems:
        raise ConfigError(str(path), problems)
    if raw.get("output") is None:
        raw["output"] = {}
    if isinstance(raw["output"], dict) and not raw["output"].get("name"):
        raw["output"]["name"] = path.stem  # the default run name
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config, apply ``--set`` overrides, validate; default run name = the file's stem."""
    path = Path(path)
    raw = load_raw(path)
    cfg = config_from_dict(raw, source=str(path), overrides=list(overrides))
    if cfg.output.name is None:
        cfg.output.name = path.stem
    return cfg


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
