"""Intervals and paired tests: the vectorised resampler against scikit-learn and an independent bootstrap."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from emolab.significance import (intervals, mcnemar_exact, multi_label_stats, p_phrase, paired_comparison,
                                 resample_counts, single_label_stats, with_interval)


def _predictions(n=600, k=6, accuracy=0.85, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(k, n, p=np.r_[0.4, 0.3, 0.1, 0.1, 0.07, 0.03])
    pred = np.where(rng.random(n) < accuracy, y, rng.integers(0, k, n))
    return y, pred


def test_each_resample_scores_like_sklearn_on_the_resampled_examples():
    y, pred = _predictions()
    w = resample_counts(len(y), 4, seed=3)
    s = single_label_stats(w, y, pred, 6)
    for b in range(4):
        idx = np.repeat(np.arange(len(y)), w[b].astype(int))
        assert s["accuracy"][b] == pytest.approx(accuracy_score(y[idx], pred[idx]), abs=1e-12)
        assert s["macro_f1"][b] == pytest.approx(f1_score(y[idx], pred[idx], average="macro"), abs=1e-12)
        assert s["weighted_f1"][b] == pytest.approx(f1_score(y[idx], pred[idx], average="weighted"), abs=1e-12)
        np.testing.assert_allclose(s["f1"][b], f1_score(y[idx], pred[idx], average=None, labels=range(6),
                                                        zero_division=0), atol=1e-12)


def test_multi_label_resamples_score_like_sklearn():
    rng = np.random.default_rng(1)
    t = rng.random((300, 4)) < 0.3
    p = t ^ (rng.random((300, 4)) < 0.15)
    w = resample_counts(300, 3, seed=2)
    s = multi_label_stats(w, t, p)
    for b in range(3):
        idx = np.repeat(np.arange(300), w[b].astype(int))
        assert s["micro_f1"][b] == pytest.approx(f1_score(t[idx], p[idx], average="micro"), abs=1e-12)
        assert s["macro_f1"][b] == pytest.approx(f1_score(t[idx], p[idx], average="macro", zero_division=0), abs=1e-12)


def test_intervals_agree_with_an_independent_10000_resample_percentile_bootstrap():
    y, pred = _predictions(n=600)
    ours = intervals(y, pred, list("abcdef"), resamples=1000, seed=0)
    correct = (y == pred).astype(float)
    ref = stats.bootstrap((correct,), np.mean, n_resamples=10_000, method="percentile", random_state=7,
                          vectorized=True).confidence_interval
    assert ours["accuracy"][0] == pytest.approx(ref.low, abs=0.003)
    assert ours["accuracy"][1] == pytest.approx(ref.high, abs=0.003)
    # macro-F1 with scikit-learn on each resample (paired: the same indices for truth and prediction)
    rng = np.random.default_rng(11)
    draws = [f1_score(y[i], pred[i], average="macro") for i in rng.integers(0, len(y), (2000, len(y)))]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert ours["macro_f1"][0] == pytest.approx(lo, abs=0.006)
    assert ours["macro_f1"][1] == pytest.approx(hi, abs=0.006)
    assert ours["macro_f1"][0] < f1_score(y, pred, average="macro") < ours["macro_f1"][1]
    assert set(ours["per_class_f1"]) == set("abcdef")
    assert ours["method"]["resamples"] == 1000


def test_intervals_are_seeded_and_narrow_with_more_examples():
    y, pred = _predictions(n=400)
    assert intervals(y, pred, list("abcdef"), seed=5) == intervals(y, pred, list("abcdef"), seed=5)
    assert intervals(y, pred, list("abcdef"), seed=5) != intervals(y, pred, list("abcdef"), seed=6)
    y4, pred4 = _predictions(n=4000)
    width = lambda ci: ci["accuracy"][1] - ci["accuracy"][0]  # noqa: E731
    assert width(intervals(y4, pred4, list("abcdef"))) < 0.5 * width(intervals(y, pred, list("abcdef")))


def test_paired_test_finds_a_real_difference_and_not_a_null_one():
    y, good = _predictions(n=1000, accuracy=0.9, seed=1)
    rng = np.random.default_rng(2)
    bad = np.where(rng.random(1000) < 0.15, (good + 1) % 6, good)  # the same model, 15% of answers broken
    r = paired_comparison(y, bad, good, list("abcdef"), seed=0)
    assert r["accuracy"].difference == pytest.approx((bad == y).mean() - (good == y).mean())
    assert r["accuracy"].significant and r["macro_f1"].significant
    assert r["macro_f1"].interval[1] < 0
    same = paired_comparison(y, good, good.copy(), list("abcdef"))
    assert not same["accuracy"].significant and same["macro_f1"].p_value == 1.0


def test_mcnemar_exact_matches_the_binomial_test_by_hand():
    a = np.array([1] * 10 + [0] * 3 + [1] * 20, dtype=bool)  # 10 only-a, 3 only-b, 20 both
    b = np.array([0] * 10 + [1] * 3 + [1] * 20, dtype=bool)
    assert mcnemar_exact(a, b) == pytest.approx(stats.binomtest(10, 13, 0.5).pvalue)


def test_with_interval_formats_value_and_bounds():
    assert with_interval(0.93051, [0.91951, 0.94149]) == "0.9305 [0.920, 0.941]"
    assert with_interval(None, None) == "–"


def test_per_class_intervals_skip_resamples_without_the_class():
    y = np.zeros(100, int)
    y[:2] = 1  # a class with two examples, both right: F1 1.0 wherever it appears
    ci = intervals(y, y.copy(), ["common", "rare", "absent"])["per_class_f1"]
    assert ci["rare"] == [1.0, 1.0] and ci["absent"] is None


def test_large_splits_are_resampled_in_blocks_with_the_same_draws():
    counts = resample_counts(50_000, 700, seed=4)
    assert counts.shape == (700, 50_000) and (counts.sum(axis=1) == 50_000).all()


def test_p_phrase_says_when_a_bootstrap_p_is_below_its_resolution():
    y, good = _predictions(n=1000, accuracy=0.9, seed=1)
    worse = np.where(np.arange(1000) % 4 == 0, (good + 1) % 6, good)
    r = paired_comparison(y, worse, good, list("abcdef"), resamples=2000)
    assert p_phrase(r["macro_f1"].to_dict()) == "p < 0.0005"
    assert p_phrase({"p_value": 0.31}) == "p = 0.31"
