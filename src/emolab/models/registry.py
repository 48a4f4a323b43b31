"""Models by name: ``@register_model("name")`` on a classifier class, ``create_model`` / ``load_model``.

A registered model is one class that describes itself, so training, evaluation, analysis, compression,
reports and serving never ask for its name:

- ``config_class``: its own config section (a :class:`ModelConfig` dataclass that checks its values);
- ``modality`` (``text`` / ``image``), ``family``, ``training`` and ``describe(cfg)``: what its card says
  (input kind, a one-line summary, the hyperparameters worth reporting);
- ``from_config(cfg, labels, dataset=None)`` builds an untrained model; ``fit(dataset, run_cfg, logger)``
  trains it and returns the per-epoch history (``fit_notes()``: what that fit wants said beside its scores);
  ``set_inference(eval_cfg)`` applies evaluation options;
- ``predict_proba(inputs, batch_size)`` returns ``(N, K)`` probabilities (calibrated, when the model carries a
  :class:`~emolab.calibration.Calibration`: the base class applies it to what every subclass returns);
- ``save(folder)`` / ``load(folder)`` write and read everything needed to predict offline.

This module is a leaf. The built-in models are listed in :data:`BUILTIN` and imported on first lookup, so
importing the registry (or :mod:`emolab.models`) imports no model and no deep-learning framework.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emolab.calibration import Calibration
from emolab.errors import EmolabError, unknown_name
from emolab.records import LabelSet, ModelCard
from emolab.sections import build_section, saved_section

MODEL_FILE = "emolab_model.json"
_MODELS: dict[str, type[Classifier]] = {}

# The built-in models, found on first lookup: name -> (the module that registers it, "module:Class" of its
# config section). Config sections live in modules without torch, so reading a run's config, its card or its
# metrics (compare, report, serving an ONNX export) imports no deep-learning framework. A model added
# elsewhere registers itself with @register_model when its module is imported.
BUILTIN: dict[str, tuple[str, str]] = {
    "tfidf": ("emolab.models.classical", "emolab.models.classical:TfidfConfig"),
    "pixel-logreg": ("emolab.models.classical", "emolab.models.classical:PixelLogregConfig"),
    "transformer": ("emolab.models.text", "emolab.models.text_config:TransformerConfig"),
    "transformer-pruned": ("emolab.models.pruned", "emolab.models.text_config:TransformerConfig"),
    "onnx": ("emolab.models.onnx", "emolab.models.registry:ModelConfig"),
    "onnx-image": ("emolab.models.onnx", "emolab.models.registry:ModelConfig"),
    "mlp": ("emolab.models.vision", "emolab.models.vision_config:MlpConfig"),
    "cnn-small": ("emolab.models.vision", "emolab.models.vision_config:CnnConfig"),
    "vgg-fer": ("emolab.models.vision", "emolab.models.vision_config:VggConfig"),
    "resnet18-fer": ("emolab.models.vision", "emolab.models.vision_config:ResNetConfig"),
    "what-the-face": ("emolab.models.reference", "emolab.models.vision_config:ImageModelConfig"),
}


def _import(ref: str):
    import importlib

    module, _, attr = ref.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attr) if attr else loaded


@dataclass
class ModelConfig:
    """The ``model`` section every model's config extends: its registered ``name`` and its own keys."""

    name: str = ""  # the registered model this section configures; the other keys are its own
    modality: ClassVar[str] = "text"  # what the configured model reads (its class says the same)

    def check(self, problems: list[str]) -> None:
        """Append value problems (``model.key: ...``) that types alone cannot express."""

    def unregularised(self) -> ModelConfig:
        """This config with every regulariser off (``emolab sanity``: can the model memorise a few examples?)."""
        return self

    @classmethod
    def from_saved(cls, saved: dict[str, Any], *, source: str = MODEL_FILE) -> ModelConfig:
        """Rebuild from a model card's ``config`` by the config loader (:func:`emolab.sections.saved_section`):
        typed and checked as in a config file, keys this model does not own dropped (cards written before each
        model had its own section held every family's keys)."""
        return saved_section(cls, saved, "model.", source=source)


class Classifier:
    """The base of every registered model; subclasses set the class attributes and implement the methods."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    modality: ClassVar[str] = "text"  # text | image
    family: ClassVar[str] = ""  # classical | transformer | cnn | onnx: what kind of model, for reports
    training: ClassVar[str] = "loop"  # loop | one-pass | pretrained | none (see records.ModelCard)
    supports_resume: ClassVar[bool] = False
    trains_in_loop: ClassVar[bool] = False  # True: emolab.training.train fits it in the loop, else by its own fit
    cfg: ModelConfig
    labels: LabelSet
    # set by `emolab calibrate` / eval.calibrate and by load_model from the card; None: probabilities as trained
    calibration: Calibration | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every subclass's ``predict_proba`` returns calibrated probabilities when the model carries a
        calibration (applied once, by the most derived definition, if one calls another through super())."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("predict_proba")
        if own is None:
            return

        @functools.wraps(own)
        def predict_proba(self, inputs: Any, batch_size: int = 64) -> np.ndarray:
            probs = own(self, inputs, batch_size)
            if self.calibration is None or self.calibration.in_graph or type(self).predict_proba is not predict_proba:
                return probs
            return self.calibration.apply(probs)

        cls.predict_proba = predict_proba

    # --- what the model says about itself ---
    @classmethod
    def input_spec(cls, cfg: ModelConfig) -> dict[str, Any]:
        return {"kind": cls.modality}

    @classmethod
    def summary(cls, cfg: ModelConfig) -> str:
        """One line for the report's model line and the leaderboard's model column."""
        return cls.name

    @classmethod
    def hyperparameters(cls, cfg: ModelConfig) -> dict[str, Any]:
        """The config keys worth reporting (default: all of the model's own keys)."""
        return dataclasses.asdict(cfg)

    @classmethod
    def citation(cls, cfg: ModelConfig) -> str | None:
        return None

    @classmethod
    def describe(cls, cfg: ModelConfig, labels: LabelSet, **extra: Any) -> ModelCard:
        return ModelCard(model=cls.name, labels=labels, modality=cls.modality, input=cls.input_spec(cfg),
                         summary=cls.summary(cfg), family=cls.family, training=cls.training,
                         hyperparameters=cls.hyperparameters(cfg), citation=cls.citation(cfg), extra=extra)

    def card(self) -> ModelCard:
        return self.with_calibration(self.describe(self.cfg, self.labels, config=dataclasses.asdict(self.cfg)))

    def with_calibration(self, card: ModelCard) -> ModelCard:
        """``card`` recording the model's calibration (what every ``card()`` returns)."""
        if self.calibration is None:
            return card
        return dataclasses.replace(card, extra={**card.extra, "calibration": self.calibration.to_dict()})

    # --- behaviour ---
    @classmethod
    def from_config(cls, cfg: ModelConfig, labels: LabelSet, dataset: Any = None) -> Classifier:
        raise NotImplementedError

    def fit(self, dataset: Any, run_cfg: Any, logger: Any = None, *, workdir: Path | None = None,
            resume: bool = False) -> list:
        raise NotImplementedError

    def set_inference(self, eval_cfg: Any) -> None:
        """Apply evaluation options (test-time augmentation for image models); once, after fit or load."""

    def fit_notes(self) -> list[str]:
        """What the last ``fit`` wants said beside the model's scores (a solver stopped at its iteration cap)."""
        return []

    # True where an example's scores would depend on the examples batched with it (activations quantized per
    # call, as in dynamic int8): predict_proba then runs one example at a time, whatever batch_size it is given
    per_example: bool = False

    def predict_proba(self, inputs: Any, batch_size: int = 64) -> np.ndarray:
        raise NotImplementedError

    def as_read(self, inputs: Any) -> list:
        """What the model reads of each input, as something comparable: two inputs read alike get the same
        scores (an uncased tokenizer reads "I FEEL" as "i feel"; text past ``max_length`` is cut). Default: the
        inputs themselves."""
        return list(inputs)

    def num_parameters(self) -> int | None:
        return None

    def set_threads(self, threads: int) -> None:
        """Use ``threads`` CPU threads for inference where the runtime takes a per-model setting (ONNX
        Runtime); PyTorch's setting is per process (``torch.set_num_threads``)."""

    def to_precision(self, precision: str) -> None:
        if precision != "fp32":
            raise EmolabError(f"model {self.name!r} has no {precision} mode", hint="use --precision fp32")

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path) -> Classifier:
        raise NotImplementedError


def register_model(name: str):
    """Class decorator: ``@register_model("cnn-small")`` names the class and adds it to the registry."""

    def wrap(cls: type[Classifier]) -> type[Classifier]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice ({_MODELS[name].__name__}, {cls.__name__})")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def list_models() -> list[str]:
    return sorted(set(_MODELS) | set(BUILTIN))


def model_class(name: str) -> type[Classifier]:
    """The class of model ``name``; a built-in model's module is imported on first lookup."""
    if name not in _MODELS and name in BUILTIN:
        _import(BUILTIN[name][0])
    if name not in _MODELS:
        raise unknown_name("model", name, list_models())
    return _MODELS[name]


def model_config_class(name: str) -> type[ModelConfig]:
    """The config section class of model ``name``, without importing the model itself (nor torch)."""
    if name in _MODELS:
        return _MODELS[name].config_class
    if name in BUILTIN:
        return _import(BUILTIN[name][1])
    raise unknown_name("model", name, list_models())


def model_config(name: str, **values: Any) -> ModelConfig:
    """The config section of model ``name`` with ``values`` set, e.g. ``model_config("tfidf", C=1.0)``, typed and
    checked as a config file's ``model`` section (:func:`emolab.sections.build_section`)."""
    return build_section(model_config_class(name), {"name": name, **values}, "model.",
                         source=f"model_config({name!r})")


def create_model(cfg: ModelConfig, labels: LabelSet, dataset: Any = None) -> Classifier:
    """An untrained model; ``dataset`` (optional) lets a model fit its input to the data (image side)."""
    return model_class(cfg.name).from_config(cfg, labels, dataset)


def write_model_card(folder: Path, card: ModelCard) -> None:
    """The JSON that tells ``load_model`` which class reads this folder, and everyone else what it holds."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_text(json.dumps(card.to_dict(), indent=2))


def read_model_card(folder: Path) -> dict:
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise EmolabError(f"{folder} holds no emolab model ({MODEL_FILE} missing)",
                          hint="give a run directory written by `emolab run`, or its model/ folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmolabError(f"{path} is not a readable model card ({exc})",
                          hint="the file is damaged: write the run or the export again") from None


def model_card(folder: str | Path) -> ModelCard:
    """The card of a saved model folder (a run directory or its ``model/``); cards written before models
    described themselves are completed by the model's class."""
    folder = Path(folder)
    if (folder / "model" / MODEL_FILE).is_file():
        folder = folder / "model"
    raw = read_model_card(folder)
    if "summary" in raw:
        return ModelCard.from_dict(raw)
    cls = model_class(raw["model"])
    cfg = cls.config_class.from_saved(raw.get("config", {}), source=str(folder / MODEL_FILE))
    extra = {k: v for k, v in raw.items() if k not in ("model", "labels", "modality")}
    return cls.describe(cfg, LabelSet.from_dict(raw["labels"]), **extra)


def load_model(folder: str | Path) -> Classifier:
    folder = Path(folder)
    if (folder / "model" / MODEL_FILE).is_file():
        folder = folder / "model"
    card = read_model_card(folder)
    cls = model_class(card["model"])
    try:
        model = cls.load(folder)
    except EmolabError:
        raise
    except Exception as exc:  # a truncated or damaged weights file: say which folder, not a traceback
        raise EmolabError(f"cannot read the model in {folder}: {type(exc).__name__}: {exc}",
                          hint="a file there is damaged or incomplete (an interrupted copy?): write the run or "
                               "the export again") from exc
    model.calibration = Calibration.of_card(card)
    return model
