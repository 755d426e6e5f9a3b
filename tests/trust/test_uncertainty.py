"""Uncertainty of ensembles and referral: hand-checked values."""

import numpy as np
import pytest

from biodl.trust import uncertainty


def test_identical_members_have_no_disagreement_and_disagreeing_ones_do():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), 50)
    same = uncertainty.decompose(np.stack([p, p, p]))
    np.testing.assert_allclose(same["mutual_information"], 0, atol=1e-12)
    np.testing.assert_allclose(same["entropy"], uncertainty.entropy(p))
    a, b = np.array([[0.9, 0.1]]), np.array([[0.1, 0.9]])
    split = uncertainty.decompose(np.stack([a, b]))
    # mean [0.5, 0.5]: entropy ln 2; each member's entropy H(0.9, 0.1); their difference > 0
    h = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    assert split["entropy"][0] == pytest.approx(np.log(2)) and split["mutual_information"][0] == pytest.approx(
        np.log(2) - h) and split["mutual_information"][0] > 0.3


def test_referral_keeps_the_most_certain_and_aurc_rewards_a_good_ranking():
    y = np.array([0, 0, 1, 1])
    prob = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.45, 0.55]])  # rows 1 and 3: wrong? row 1 wrong
    wrong = prob.argmax(1) != y  # [F, T, F, F]
    good = np.array([0.1, 0.9, 0.2, 0.3])  # the error is the most uncertain
    bad = np.array([0.9, 0.1, 0.8, 0.7])  # the error is the most certain
    curve = uncertainty.referral_curve(y, prob, good, np.array([0.0, 0.25, 0.5]))
    assert curve["kept"].tolist() == [4, 3, 2] and curve["accuracy"].tolist() == [0.75, 1.0, 1.0]
    assert uncertainty.aurc(y, prob, good) == pytest.approx(np.mean([0, 0, 0, 1 / 4]))
    assert uncertainty.aurc(y, prob, bad) == pytest.approx(np.mean([1, 1 / 2, 1 / 3, 1 / 4]))
    assert wrong.sum() == 1


def test_referral_interval_equals_the_curves_of_materialised_resamples():
    """The kept accuracy of each resample, computed from weights, is the accuracy that the
    referral curve gives on that resample written out case by case (tied uncertainties and a
    cut among the copies of one case included); the interval brackets the sample's curve."""
    from biodl.evaluation import bootstrap_counts

    rng = np.random.default_rng(8)
    n = 70
    y = rng.integers(0, 3, n)
    prob = rng.dirichlet(np.ones(3), n)
    prob[np.arange(n), y] += rng.random(n)  # better than chance, unevenly sure
    prob /= prob.sum(axis=1, keepdims=True)
    unc = np.round(uncertainty.entropy(prob), 1)  # one decimal: many ties
    counts = bootstrap_counts(n, 40, seed=5, groups=np.arange(n) // 2)
    fractions = np.array([0.0, 0.1, 0.25, 0.5])
    table = uncertainty.referral_curve(y, prob, unc, fractions, counts)
    order = np.argsort(-unc, kind="stable")
    kept = uncertainty._kept_accuracy((prob.argmax(1) == y)[order], counts[:, order], fractions)
    for w, row in zip(counts, kept, strict=True):
        idx = np.repeat(np.arange(n), w)
        want = uncertainty.referral_curve(y[idx], prob[idx], unc[idx], fractions)["accuracy"].to_numpy()
        np.testing.assert_allclose(row, want, atol=1e-12)
    assert (table["accuracy_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["accuracy_high"]).all()
    assert (table["accuracy_high"] - table["accuracy_low"]).min() > 0.05
