"""The config of an emolab text classifier exported for Hugging Face transformers (``emolab export --format
hf``): the encoder's own config, the pooling head and the labels."""

from transformers import PretrainedConfig


class EmolabConfig(PretrainedConfig):
    model_type = "emolab"

    def __init__(self, encoder=None, pooling="mean", classifier_dropout=0.1, **kwargs):
        self.encoder = dict(encoder or {})
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)
