"""Serving saved models: an HTTP API with micro-batching, limits and metrics, and a demo page."""

from emolab.serving.app import ServeSettings, create_app
from emolab.serving.models import Limits, ServedModel
from emolab.serving.server import serve

__all__ = ["Limits", "ServeSettings", "ServedModel", "create_app", "serve"]
