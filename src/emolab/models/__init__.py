"""Models: a registry by name (tf-idf baseline, transformer encoders, face CNNs, compressed and ONNX copies).

Each module holds its classes and ``@register_model``; the registry imports a built-in model's module the first
time its name is looked up (``registry.BUILTIN``), so importing this package loads no model and no torch. A
model added elsewhere registers itself the same way when its module is imported.
"""

from emolab.models.registry import (Classifier, ModelConfig, create_model, list_models, load_model, model_card,
                                    model_class, model_config, model_config_class, register_model)

__all__ = ["Classifier", "ModelConfig", "create_model", "list_models", "load_model", "model_card", "model_class",
           "model_config", "model_config_class", "register_model"]
