"""Serving saved models: an HTTP API with micro-batching, limits and metrics, and a demo page.

The names below load on first use, so that reading the settings (:mod:`emolab.serving.settings`, as the
command line does when it starts) imports no web framework."""

from importlib import import_module

_WHERE = {"BatchSettings": "settings", "Limits": "settings", "ServeSettings": "settings", "ServedModel": "models",
          "create_app": "app", "serve": "server"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
