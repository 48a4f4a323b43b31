"""Why a text was misread: word occlusion. Each word is removed in turn and the drop in the log-probability
of the predicted label is its attribution (positive: the word pushed the model towards its answer).
Log-probabilities keep the signal visible when the model is very confident (p close to 1).

Model-agnostic: it only needs ``predict_proba(texts) -> (N, K)``, so it works for every text model.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

PredictProba = Callable[[list[str]], np.ndarray]


def occlusion(predict_proba: PredictProba, text: str, target: int, *, max_words: int = 64) -> list[tuple[str, float]]:
    """``[(word, attribution), ...]`` for the first ``max_words`` words of ``text``."""
    words = text.split()
    head, tail = words[:max_words], words[max_words:]
    variants = [" ".join(head[:i] + head[i + 1:] + tail) for i in range(len(head))]
    logp = np.log(np.clip(predict_proba([text] + variants)[:, target], 1e-12, 1.0))
    scores = [(w, float(logp[0] - lp)) for w, lp in zip(head, logp[1:])]
    return scores + [(w, 0.0) for w in tail]


def explain_errors(predict_proba: PredictProba, rows: list[dict[str, Any]], label_names, *, top: int = 10
                   ) -> list[dict[str, Any]]:
    """Occlusion attributions for the first ``top`` error rows (as listed by ``misclassified``)."""
    out = []
    for r in rows[:top]:
        words = occlusion(predict_proba, r["input"], label_names.index(r["pred"]))
        out.append({"id": r["id"], "true": r["true"], "pred": r["pred"], "words": words})
    return out


def highlight_html(words: list[tuple[str, float]]) -> str:
    """Words shaded red by how much they pushed towards the prediction (blue: against it)."""
    scale = max([abs(s) for _, s in words] + [1e-9])
    spans = []
    for w, s in words:
        a = min(abs(s) / scale, 1.0) * 0.8
        color = f"rgba(220,40,40,{a:.2f})" if s > 0 else f"rgba(40,90,220,{a:.2f})"
        safe = w.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")
        spans.append(f'<mark style="background:{color}" title="log-prob change {s:+.3f}">{safe}</mark>')
    return " ".join(spans)


def highlight_markdown(words: list[tuple[str, float]], *, top: int = 3) -> str:
    """The text with the (up to) ``top`` words that pushed most towards the prediction in bold."""
    strongest = sorted((i for i, (_, s) in enumerate(words) if s > 0), key=lambda i: -words[i][1])[:top]
    out = []
    for i, (w, _) in enumerate(words):
        safe = w.replace("|", "/").replace("*", "\\*").replace("<", "&lt;")
        out.append(f"**{safe}**" if i in strongest else safe)
    return " ".join(out)
