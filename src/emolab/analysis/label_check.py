"""Checking cleanlab's label-error flags where a second opinion exists.

cleanlab (confident learning) flags only examples the model gets wrong, so "every flagged example is an
error" holds by construction and says nothing. What can be measured: how often independent annotators
(FER+ for FER2013) also contradict the given label, among the flagged errors, among the errors cleanlab did
not flag, and among correct predictions. Flags that find label noise are contradicted far more often than
unflagged errors."""

from __future__ import annotations

from typing import Any

import numpy as np


def _rates(mask: np.ndarray, usable: np.ndarray, contradicted: np.ndarray, agrees: np.ndarray) -> dict[str, Any]:
    n = int((mask & usable).sum())
    return {"examples": int(mask.sum()), "checked": n,
            "contradicted": int((mask & usable & contradicted).sum()),
            "contradicted_rate": float((mask & usable & contradicted).sum() / n) if n else None,
            "second_opinion_agrees_with_model": float((mask & usable & agrees).sum() / n) if n else None}


def check_flags(y_true: np.ndarray, y_pred: np.ndarray, flagged: np.ndarray, opinion: dict[str, Any]) -> dict[str, Any]:
    """Contradiction rates of the second opinion in three groups: flagged errors, unflagged errors, correct
    predictions, with a Fisher exact test of flagged against unflagged errors."""
    from scipy.stats import fisher_exact

    other = np.asarray(opinion["labels"])
    usable = other >= 0
    wrong = y_pred != y_true
    contradicted, agrees = other != y_true, other == y_pred
    groups = {"flagged": flagged & wrong, "unflagged_errors": wrong & ~flagged, "correct": ~wrong}
    out = {"source": opinion["source"], "excluded": opinion["excluded"],
           "groups": {k: _rates(m, usable, contradicted, agrees) for k, m in groups.items()}}
    f, u = out["groups"]["flagged"], out["groups"]["unflagged_errors"]
    if f["checked"] and u["checked"]:
        table = [[f["contradicted"], f["checked"] - f["contradicted"]],
                 [u["contradicted"], u["checked"] - u["contradicted"]]]
        out["fisher_p"] = float(fisher_exact(table, alternative="greater").pvalue)
    out["conclusion"] = conclusion(out)
    return out


def conclusion(check: dict[str, Any]) -> str:
    """The report's sentence, worded from the measured rates."""
    g = check["groups"]
    f, u, c = g["flagged"], g["unflagged_errors"], g["correct"]
    if not f["checked"]:
        return f"No flagged example has a usable label from {check['source']}, so the flags cannot be checked."
    rates = (f"{check['source']} contradicts the given label for {f['contradicted_rate']:.0%} of the "
             f"{f['checked']} flagged errors it labels, against {u['contradicted_rate'] or 0:.0%} of the "
             f"{u['checked']} unflagged errors and {c['contradicted_rate'] or 0:.0%} of the {c['checked']} correct "
             f"predictions")
    excluded = ", ".join(f"{v} {k}" for k, v in check["excluded"].items())
    p = check.get("fisher_p")
    if p is not None and p < 0.05 and f["contradicted_rate"] > (u["contradicted_rate"] or 0):
        verdict = (f"the flags do pick out label noise (Fisher p = {p:.2g}), but only as a share: about "
                   f"{f['contradicted_rate']:.0%} of the flagged labels are wrong by this check, not all of them, "
                   f"and {u['contradicted_rate'] or 0:.0%} of the other errors are too")
    elif not u["checked"]:
        verdict = (f"every checked error is flagged, so there is no unflagged error to compare with; about "
                   f"{f['contradicted_rate']:.0%} of the flagged labels are wrong by this check")
    else:
        verdict = ("flagged errors are not contradicted more often than other errors, so the flags are no evidence "
                   "of label noise here")
    return f"{rates} ({excluded} left out): {verdict}."
