"""Compression: precision, pruning, quantization, distillation and ONNX export, measured alike."""

from emolab.compression.compress import compress, export_run
from emolab.compression.methods import METHODS, CompressOptions, list_methods

__all__ = ["METHODS", "CompressOptions", "compress", "export_run", "list_methods"]
