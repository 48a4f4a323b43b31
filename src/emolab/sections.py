"""Config sections from mappings: the one loader that builds a config dataclass from the mapping a config file,
a ``--set`` override, a saved run or a model card holds, checking each key against the dataclass's fields and
each value against its annotation, and collecting every problem instead of stopping at the first.

:mod:`emolab.config` builds the run config with it; :mod:`emolab.models.registry` builds a model's section
with it (``model_config``, and ``ModelConfig.from_saved`` for a model card). A leaf: it imports nothing from
emolab but errors, so the registries can use it.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Callable, Literal, Optional

from emolab.errors import ConfigError, did_you_mean

# The class a mapping becomes when that is decided by the mapping itself (a ``model`` section by its registered
# ``name``): ``pick(cls, raw, prefix, problems)`` returns the class and mapping to build, or None after
# appending why not. emolab.config passes one for the data and model sections.
Pick = Callable[[type, dict, str, list], Optional[tuple]]

# PyYAML reads YAML 1.1, where a float needs a dot: `3e-5` and `1e5` come back as strings. YAML 1.2, and whoever
# writes a learning rate, means the number. A config file, a --set value, a mapping given to config_from_dict and
# a model card's section all go through this one rule (yaml_numbers).
EXPONENT_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")


def yaml_numbers(node: Any) -> Any:
    """``node`` with every string written as a number in exponent notation (``3e-5``, ``1E5``, ``2.5e-3``)
    turned into that float, in nested mappings and lists too; everything else as it was."""
    if isinstance(node, dict):
        return {k: yaml_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [yaml_numbers(v) for v in node]
    if isinstance(node, str) and EXPONENT_NUMBER.fullmatch(node):
        return float(node)
    return node


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


_EXPECTED = {int: "an integer", bool: "true or false", str: "a string", list: "a list", dict: "a mapping"}


def coerce(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            sub: list[str] = []
            out = coerce(value, arg, key, sub)
            if not sub:
                return out
        problems.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is Literal:
        if value is False and "no" in typing.get_args(tp):  # YAML reads a bare `no` as false
            return "no"
        if value not in typing.get_args(tp):
            problems.append(f"{key}: {value!r} is not one of {_type_name(tp)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp in _EXPECTED:
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            problems.append(f"{key}: expected {_EXPECTED[tp]}, got {value!r}")
        return value
    return value


def build(cls: type, raw: Any, prefix: str, problems: list[str], *, pick: Pick | None = None) -> Any:
    """An instance of dataclass ``cls`` from the mapping ``raw``: keys checked against its fields, values against
    their annotations, nested sections built the same way; problems appended (each named by ``prefix`` + key).
    ``pick`` chooses the class of a section whose mapping names it (see :data:`Pick`)."""
    if isinstance(raw, cls):  # a section given as the dataclass itself (``model_config(..., augment=...)``)
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{prefix or 'config'}: expected a mapping of keys, got {raw!r}")
        return cls()
    if pick is not None:
        found = pick(cls, raw, prefix, problems)
        if found is None:
            return cls(name=raw.get("name"))
        cls, raw = found
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            owner = f" for {raw['name']!r}" if "name" in fields and isinstance(raw.get("name"), str) else ""
            problems.append(f"{dotted}: unknown key{owner}{did_you_mean(key, fields)}; valid keys here: "
                            f"{', '.join(fields)}")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build(tp, value, f"{dotted}.", problems, pick=pick)
        else:
            kwargs[key] = coerce(value, tp, dotted, problems)
    return cls(**kwargs)


def owned(cls: type, raw: Any) -> Any:
    """``raw`` without the keys that dataclass ``cls`` does not have, in its nested sections too."""
    if not isinstance(raw, dict):
        return raw
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: owned(hints[k], v) if dataclasses.is_dataclass(hints[k]) else v for k, v in raw.items() if k in names}


def build_section(cls: type, values: Any, prefix: str, *, source: str) -> Any:
    """Section ``cls`` (a registered model's or dataset's config class, whose keys ``prefix`` names, e.g.
    ``"model."``) from the mapping ``values``, typed (numbers as :func:`yaml_numbers` reads them) and checked
    (its ``check``) as in a config file; every problem raised at once as a :class:`ConfigError` naming ``source``."""
    problems: list[str] = []
    section = build(cls, yaml_numbers(values), prefix, problems)
    section.check(problems)
    if problems:
        raise ConfigError(source, problems)
    return section


def saved_section(cls: type, saved: Any, prefix: str, *, source: str) -> Any:
    """A section as a model card (its ``config``) saved it, rebuilt as :func:`build_section` builds one. Keys the
    class does not own are dropped, nested sections included: cards written before each model had its own
    section held every family's keys."""
    return build_section(cls, owned(cls, saved), prefix, source=source)


def replace_checked(section: Any, prefix: str, *, source: str, **values: Any) -> Any:
    """``dataclasses.replace(section, **values)`` with each value checked against its field's type as a config
    file's would be, e.g. ``replace_checked(cfg.eval, "eval.", source="--tta", tta="flip")``."""
    hints = typing.get_type_hints(type(section))
    names = [f.name for f in dataclasses.fields(section)]
    problems: list[str] = []
    for key, value in values.items():
        if key not in names:
            problems.append(f"{prefix}{key}: unknown key{did_you_mean(key, names)}")
        else:
            values[key] = coerce(value, hints[key], f"{prefix}{key}", problems)
    if problems:
        raise ConfigError(source, problems)
    return dataclasses.replace(section, **values)
