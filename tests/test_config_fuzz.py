"""Fuzzing the config loader: whatever YAML file and ``--set`` values a user gives, ``load_config`` returns a
config or raises an EmolabError that says what is wrong, never another exception, and never slowly."""

from __future__ import annotations

import dataclasses
import time

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emolab.config import EvalConfig, OutputConfig, SweepConfig, TrainConfig, load_config
from emolab.data import list_datasets
from emolab.data.registry import dataset_config_class
from emolab.errors import EmolabError
from emolab.models import list_models
from emolab.models.registry import model_class


def _keys(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


SECTIONS = {
    "train": _keys(TrainConfig),
    "eval": _keys(EvalConfig),
    "output": _keys(OutputConfig),
    "sweep": _keys(SweepConfig),
    "data": sorted({k for n in list_datasets() for k in _keys(dataset_config_class(n))}),
    "model": sorted({k for n in list_models() for k in _keys(model_class(n).config_class)} | {"augment"}),
}
TOP = [*SECTIONS, "seed", "seeds", "matrix"]
DOTTED = [f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys] + ["seed", "seeds", "model.augment.p",
                                                                       "model.augment.hflip", "matrix.seed"]
NAMES = {"data": list_datasets(), "model": list_models()}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 3), st.integers(2 ** 31, 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["mean", "cosine", "no", "yes", "3e-5", "1e400", "-.inf", ".nan", "2024-13-45", "~", "&a", "*a",
                     "adamw", "sqrt", "flip", "tensorboard", "validation", "[1, 2", "{a: 1}", "csv", "fer2013"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


@st.composite
def sections(draw, name: str):
    keys = st.one_of(st.sampled_from(SECTIONS[name]), st.text(max_size=10))
    out = draw(st.dictionaries(keys, values, max_size=6))
    if name in NAMES and draw(st.booleans()):
        out["name"] = draw(st.sampled_from(NAMES[name]))
    return out


documents = st.dictionaries(
    st.one_of(st.sampled_from(TOP), st.text(max_size=8)),
    st.one_of(values, *(sections(n) for n in SECTIONS)), max_size=8)
overrides = st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(DOTTED),
              st.one_of(st.text(max_size=20), scalars.map(lambda v: yaml.safe_dump(v, default_flow_style=True)
                                                           .removesuffix("\n...\n").strip()))),
    st.text(max_size=30)), max_size=4)

SLOW_S = 5.0  # one load, of any document, takes far less on any machine


def _load_returns_or_says_why(path, text: str, sets: list[str]) -> None:
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    try:
        load_config(path, sets)
    except EmolabError as exc:
        assert str(exc).strip()
    assert time.perf_counter() - start < SLOW_S


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@FUZZ
@given(doc=documents, sets=overrides)
def test_any_config_document_loads_or_raises_an_emolab_error(tmp_path, doc, sets):
    _load_returns_or_says_why(tmp_path / "fuzz.yaml", yaml.safe_dump(doc), sets)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#,?\n 0123e.~%@`")), max_size=80))
def test_any_yaml_text_loads_or_raises_an_emolab_error(tmp_path, text):
    _load_returns_or_says_why(tmp_path / "fuzz.yaml", text, [])
