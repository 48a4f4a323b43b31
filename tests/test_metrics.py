"""Every metric checked against scikit-learn on shared inputs."""

import numpy as np
import pytest
from sklearn import metrics as skm

from emolab.metrics import (classification_metrics, confusion_matrix, cross_entropy, expected_calibration_error,
                            kl_divergence, multilabel_metrics, normalize_confusion, tune_thresholds)

NAMES = ["a", "b", "c", "d"]


def _data(seed=0, n=300, k=4, missing_class=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    if missing_class:
        y[y == 3] = 0
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y] * rng.random((n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("seed,missing", [(0, False), (1, False), (2, True)])
def test_classification_metrics_match_sklearn(seed, missing):
    y, probs = _data(seed, missing_class=missing)
    pred = probs.argmax(1)
    m = classification_metrics(y, probs, NAMES)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert m[f"{avg}_precision"] == pytest.approx(p)
        assert m[f"{avg}_recall"] == pytest.approx(r)
        assert m[f"{avg}_f1"] == pytest.approx(f)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    for i, name in enumerate(NAMES):
        assert m["per_class"][name]["precision"] == pytest.approx(p[i])
        assert m["per_class"][name]["recall"] == pytest.approx(r[i])
        assert m["per_class"][name]["f1"] == pytest.approx(f[i])
        assert m["per_class"][name]["support"] == s[i]
    assert np.array_equal(m["confusion_matrix"], skm.confusion_matrix(y, pred, labels=range(4)))
    norm = skm.confusion_matrix(y, pred, labels=range(4), normalize="true")
    assert np.allclose(m["confusion_matrix_normalized"], np.nan_to_num(norm), atol=1e-6)
    assert m["cross_entropy"] == pytest.approx(skm.log_loss(y, probs, labels=range(4)))
    assert m["kl_divergence"] == pytest.approx(m["cross_entropy"])  # one-hot targets


def test_macro_average_skips_labels_absent_from_truth_and_predictions():
    y, probs = np.array([0, 0, 1, 1]), np.eye(3)[[0, 1, 1, 1]]  # class c: never true, never predicted
    m = classification_metrics(y, probs, ["a", "b", "c"])
    # a: P 1, R 1/2, F1 2/3; b: P 2/3, R 1, F1 4/5; c: zero (undefined), left out of the macro average
    assert m["macro_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["weighted_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)  # supports 2 and 2
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_confusion_helpers():
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert normalize_confusion(np.array([[0, 0], [1, 3]])).tolist() == [[0, 0], [0.25, 0.75]]


def test_kl_and_cross_entropy_with_soft_targets():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), size=50)
    t = rng.dirichlet(np.ones(4), size=50)
    from scipy.stats import entropy

    assert kl_divergence(p, t) == pytest.approx(np.mean([entropy(t[i], p[i]) for i in range(50)]))
    assert cross_entropy(p, t) == pytest.approx(kl_divergence(p, t) + np.mean([entropy(t[i]) for i in range(50)]))


def test_expected_calibration_error_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # bins of width 0.5: {0.6}, {0.7}, {0.8}, {0.9} fall in (0.5, 1]: one bin with conf mean 0.75, acc 0.75
    assert expected_calibration_error(probs, y, n_bins=2) == pytest.approx(0.0)
    # ten bins: each example alone; |acc - conf| = 0.1, 0.8, 0.4, 0.3
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx((0.1 + 0.8 + 0.4 + 0.3) / 4)


def test_multilabel_metrics_match_sklearn():
    rng = np.random.default_rng(4)
    y = (rng.random((200, 5)) < 0.3).astype(int)
    probs = np.clip(y * 0.6 + rng.random((200, 5)) * 0.5, 0, 1)
    m = multilabel_metrics(y, probs, list("vwxyz"), threshold=0.5)
    pred = (probs >= 0.5).astype(int)
    assert m["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro", zero_division=0))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert m["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    for i, name in enumerate("vwxyz"):
        assert (m["per_class"][name]["precision"], m["per_class"][name]["recall"]) == pytest.approx((p[i], r[i]))
        assert m["per_class"][name]["f1"] == pytest.approx(f[i])
        assert m["per_class"][name]["support"] == s[i]
    assert m["bce"] == pytest.approx(np.mean([skm.log_loss(y[:, j], probs[:, j], labels=[0, 1]) for j in range(5)]),
                                     rel=1e-4)


def test_multilabel_zero_where_undefined_and_a_single_label():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.1], [0.2, 0.8, 0.3], [0.6, 0.7, 0.2], [0.1, 0.1, 0.4]])
    m = multilabel_metrics(y, probs, list("abc"))
    # a: tp 1 fp 1 fn 1 -> F1 1/2; b: tp 2 -> 1; c never true nor predicted -> 0, still in the macro average
    assert [m["per_class"][n]["f1"] for n in "abc"] == pytest.approx([0.5, 1.0, 0.0])
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    # one label: (N, 1) must be scored as that label, not as binary class ids (whose class 0 is "negative")
    one = multilabel_metrics(np.array([[1], [1], [1], [0]]), np.array([[0.9], [0.8], [0.2], [0.1]]), ["a"])
    assert one["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3,
                                                   "threshold": 0.5})
    assert one["micro_f1"] == one["macro_f1"] == pytest.approx(0.8)


def test_tuned_thresholds_do_not_lower_per_label_f1():
    rng = np.random.default_rng(5)
    y = (rng.random((300, 3)) < 0.2).astype(int)
    probs = np.clip(y * 0.3 + rng.random((300, 3)) * 0.6, 0, 1)
    t = tune_thresholds(y, probs)
    tuned = multilabel_metrics(y, probs, list("abc"), threshold=t)
    fixed = multilabel_metrics(y, probs, list("abc"), threshold=0.5)
    for name in "abc":
        assert tuned["per_class"][name]["f1"] >= fixed["per_class"][name]["f1"] - 1e-12
