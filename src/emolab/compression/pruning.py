"""Pruning: unstructured magnitude pruning (zeros in place), and structured pruning that removes compute.

- Unstructured: L1 magnitude over the weight matrices of the encoder layers (text) or the conv / linear
  layers (images), ranked globally or per layer (``torch.nn.utils.prune``). The pruned weights become
  zeros in dense tensors: the dense file and the latency stay the same; only a compressed (or sparse)
  format gets smaller.
- Structured (transformers): attention heads and feed-forward neurons with the lowest first-order Taylor
  importance (|weight x gradient| summed over a head's or neuron's weights, on a few training batches)
  are cut out of the weight matrices, so the matrices really shrink.
- Structured (CNNs): conv channels by L1 norm with ``torch-pruning``, which keeps dependent layers in step.
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch
from torch import nn

from emolab.errors import EmolabError

Scope = Literal["global", "layer"]
SCOPES = ("global", "layer")


# --- unstructured ----------------------------------------------------------------------------------------


def prunable_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """The weight matrices that magnitude pruning touches: every nn.Linear / nn.Conv2d of the encoder
    (text) or of the whole network (images), except the final classification layer and the embeddings."""
    root = getattr(module, "encoder", module)
    head = getattr(module, "head", None)
    return [(m, "weight") for m in root.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m is not head]


def sparsity(targets: Iterable[tuple[nn.Module, str]]) -> float:
    """Share of exact zeros over the given weights."""
    zeros = total = 0
    for m, name in targets:
        w = getattr(m, name)
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)


def mask_unstructured(targets: list[tuple[nn.Module, str]], amount: float, scope: Scope) -> None:
    """Attach L1 magnitude masks (weights stay trainable behind the mask until :func:`make_permanent`)."""
    import torch.nn.utils.prune as prune

    if scope not in SCOPES:
        from emolab.errors import unknown_name

        raise unknown_name("pruning scope", scope, SCOPES)
    if scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for m, name in targets:
            prune.l1_unstructured(m, name, amount=amount)


def make_permanent(targets: list[tuple[nn.Module, str]]) -> None:
    import torch.nn.utils.prune as prune

    for m, name in targets:
        if prune.is_pruned(m):
            prune.remove(m, name)


# --- structured: attention heads and feed-forward neurons --------------------------------------------------


def _layers(module: nn.Module) -> list[nn.Module]:
    layers = getattr(getattr(getattr(module, "encoder", None), "encoder", None), "layer", None)
    if layers is None or not hasattr(layers[0], "attention") or not hasattr(layers[0], "intermediate"):
        raise EmolabError(f"structured pruning supports BERT-like encoders; got {type(module).__name__}",
                          hint="use prune-unstructured, dynamic-int8 or onnx-int8 for this model")
    return list(layers)


def _head_size(layer: nn.Module) -> int:
    return layer.attention.self.attention_head_size


def taylor_importance(module: nn.Module, batches: Iterable[dict]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: importance of each attention head and each feed-forward neuron, as the sum of
    |weight x gradient of the loss| over the weights that belong to it, accumulated over ``batches``."""
    layers = _layers(module)
    was_training = module.training
    module.eval()
    module.zero_grad(set_to_none=True)
    for batch in batches:
        feed = {k: v for k, v in batch.items() if k not in ("labels", "index", "targets")}
        loss = nn.functional.cross_entropy(module(**feed).float(), batch["labels"])
        loss.backward()
    heads, neurons = [], []
    for layer in layers:
        att, d = layer.attention, _head_size(layer)
        score = sum((lin.weight * lin.weight.grad).abs().sum(1) for lin in (att.self.query, att.self.key, att.self.value))
        score = score + (att.output.dense.weight * att.output.dense.weight.grad).abs().sum(0)
        heads.append(score.view(-1, d).sum(1).detach())
        up, down = layer.intermediate.dense, layer.output.dense
        neurons.append(((up.weight * up.weight.grad).abs().sum(1) + (down.weight * down.weight.grad).abs().sum(0)).detach())
    module.zero_grad(set_to_none=True)
    module.train(was_training)
    return heads, neurons


def _keep(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices (sorted) of the highest-scoring entries after removing ``fraction`` of them (at least one kept)."""
    n_keep = max(1, round(len(scores) * (1 - fraction)))
    return torch.sort(torch.topk(scores, n_keep).indices).values


def _shrink(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    from transformers.pytorch_utils import prune_linear_layer

    return prune_linear_layer(linear, index, dim=dim)


def prune_heads_and_neurons(module: nn.Module, head_scores: list[torch.Tensor], neuron_scores: list[torch.Tensor],
                            *, head_fraction: float, ffn_fraction: float) -> dict[str, list[int]]:
    """Remove the least important ``head_fraction`` of heads and ``ffn_fraction`` of feed-forward neurons
    in every layer; returns the heads and neurons kept per layer."""
    kept = {"heads": [], "ffn": []}
    for layer, hs, ns in zip(_layers(module), head_scores, neuron_scores):
        att, d = layer.attention, _head_size(layer)
        heads = _keep(hs, head_fraction)
        rows = (heads[:, None] * d + torch.arange(d)).reshape(-1)
        for name in ("query", "key", "value"):
            setattr(att.self, name, _shrink(getattr(att.self, name), rows, 0))
        att.output.dense = _shrink(att.output.dense, rows, 1)
        att.self.num_attention_heads = len(heads)
        att.self.all_head_size = len(heads) * d
        neurons = _keep(ns, ffn_fraction)
        layer.intermediate.dense = _shrink(layer.intermediate.dense, neurons, 0)
        layer.output.dense = _shrink(layer.output.dense, neurons, 1)
        kept["heads"].append(len(heads))
        kept["ffn"].append(len(neurons))
    return kept


# --- structured: CNN channels --------------------------------------------------------------------------------


def prune_channels(module: nn.Module, example_inputs, *, ratio: float) -> dict[str, int]:
    """Remove ``ratio`` of the channels of every conv layer by L1 norm (torch-pruning keeps the layers
    that consume them in step); the final linear layer keeps its outputs. Returns the parameter counts."""
    try:
        import torch_pruning as tp
    except ImportError:  # pragma: no cover - a declared dependency
        raise EmolabError("channel pruning needs torch-pruning", hint="pip install torch-pruning") from None
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    ignored = linears[-1:]  # the classifier's outputs are the labels
    before = sum(p.numel() for p in module.parameters())
    pruner = tp.pruner.MetaPruner(module, example_inputs, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=ignored, global_pruning=False)
    pruner.step()
    return {"params_before": before, "params_after": sum(p.numel() for p in module.parameters())}
