"""Compression: precision, pruning, quantization and distillation, measured alike; the ONNX and Hugging Face
writers that ``emolab export`` (:mod:`emolab.export`) uses."""

from emolab.compression.compress import compress
from emolab.compression.methods import METHODS, CompressOptions, list_methods

__all__ = ["METHODS", "CompressOptions", "compress", "list_methods"]
