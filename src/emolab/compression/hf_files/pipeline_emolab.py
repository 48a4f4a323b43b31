"""The text-classification pipeline for an emolab export: it truncates every text to the length the model
was trained at (``model_max_length`` of the tokenizer), as emolab does, unless the caller says otherwise.
Written by ``emolab export --format hf``; transformers picks it with ``trust_remote_code=True``."""

from transformers import TextClassificationPipeline


class EmolabTextClassificationPipeline(TextClassificationPipeline):
    def _sanitize_parameters(self, function_to_apply=None, top_k="", **tokenizer_kwargs):
        tokenizer_kwargs.setdefault("truncation", True)
        tokenizer_kwargs.setdefault("max_length", self.tokenizer.model_max_length)
        return super()._sanitize_parameters(function_to_apply=function_to_apply, top_k=top_k, **tokenizer_kwargs)
