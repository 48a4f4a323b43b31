"""Models: a registry by name (tf-idf baseline, transformer encoders, face CNNs, compressed and ONNX copies).

Importing this package registers the built-in models; each module holds its classes, their config sections
and ``@register_model``. A model added elsewhere registers itself the same way when its module is imported.
"""

from emolab.models import classical, onnx, pruned, reference, text, vision  # noqa: F401  (registration)
from emolab.models.registry import (Classifier, ModelConfig, create_model, list_models, load_model, model_card,
                                    model_class, model_config, register_model)

__all__ = ["Classifier", "ModelConfig", "create_model", "list_models", "load_model", "model_card", "model_class",
           "model_config", "register_model"]
