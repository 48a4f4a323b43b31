"""An emolab text classifier as a transformers model: the encoder, emolab's pooling head, dropout and a
linear layer, with the same weight names as emolab's own module (``encoder.*``, ``pooling.*``, ``head.*``).
Written by ``emolab export --format hf``; load it with ``trust_remote_code=True``."""

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_emolab import EmolabConfig

# --- pooling heads, copied from emolab.models.text when this file was written ---
# POOLING


class EmolabForSequenceClassification(PreTrainedModel):
    config_class = EmolabConfig
    base_model_prefix = "encoder"

    def __init__(self, config):
        super().__init__(config)
        encoder_config = dict(config.encoder)
        model_type = encoder_config.pop("model_type")
        self.encoder = AutoModel.from_config(AutoConfig.for_model(model_type, **encoder_config))
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # emolab never uses the encoder's own pooler
        hidden = self.encoder.config.hidden_size
        self.pooling = POOLINGS[config.pooling](hidden)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.head = nn.Linear(hidden * self.pooling.out_factor, config.num_labels)
        self.post_init()

    def _init_weights(self, module):  # every weight comes from the saved file
        pass

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            feed["token_type_ids"] = token_type_ids
        hidden = self.encoder(**feed).last_hidden_state
        logits = self.head(self.dropout(self.pooling(hidden, attention_mask)))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
