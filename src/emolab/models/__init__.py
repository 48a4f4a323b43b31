"""Models: a registry by name (tf-idf baseline, transformer encoders, face CNNs)."""

from emolab.models.registry import Classifier, create_model, list_models, load_model, register_model

__all__ = ["Classifier", "create_model", "list_models", "load_model", "register_model"]
