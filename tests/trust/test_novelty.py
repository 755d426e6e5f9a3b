"""Novelty scores on synthetic data with a held-out class: the unseen class is left unassigned,
known cases at about the chosen rate; the conformal threshold's rank; conformal sets do the same."""

import math

import numpy as np
import pytest

from biodl.trust import conformal
from biodl.trust.novelty import NoveltyScore, threshold, unassigned


def _blobs(rng, n, centres, spread=0.6):
    y = rng.integers(0, len(centres), n)
    return centres[y] + rng.normal(0, spread, (n, centres.shape[1])), y


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (4, 8))  # class 3 is never seen in training
    train, y_train = _blobs(rng, 600, centres[:3])
    val, y_val = _blobs(rng, 400, centres[:3])
    known, _ = _blobs(rng, 2000, centres[:3])
    novel = centres[3] + rng.normal(0, 0.6, (300, 8))
    return train, y_train, val, y_val, known, novel


@pytest.mark.parametrize("kind", ["knn", "mahalanobis"])
def test_an_unseen_class_is_unassigned_and_known_cases_at_the_chosen_rate(data, kind):
    train, y_train, val, _, known, novel = data
    novelty = NoveltyScore(kind).fit(train, y_train)
    cut = threshold(novelty.score(val), alpha=0.05)
    assert unassigned(novelty.score(novel), cut).mean() > 0.95
    assert 0.02 < unassigned(novelty.score(known), cut).mean() < 0.09  # about alpha: exchangeable with validation


def test_mahalanobis_by_hand_and_the_max_probability_score():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    novelty = NoveltyScore("mahalanobis").fit(np.vstack([x, x + 10]), np.array([0] * 4 + [1] * 4))
    assert np.allclose(novelty.means, [[1, 1], [11, 11]])
    step = np.array([1.0, 1.0])  # (2, 2) is one step of (1, 1) from class 0's mean
    assert novelty.score(np.array([[1.0, 1.0]]))[0] == pytest.approx(0.0)
    assert novelty.score(np.array([[2.0, 2.0]]))[0] == pytest.approx(float(np.sqrt(step @ novelty.precision @ step)))
    prob = np.array([[0.9, 0.1], [0.5, 0.5]])
    assert NoveltyScore("max_probability").score(None, prob).tolist() == pytest.approx([0.1, 0.5])
    with pytest.raises(ValueError, match="unknown novelty score"):
        NoveltyScore("entropy")


def test_the_threshold_is_the_conformal_rank():
    scores = np.arange(1, 20, dtype=float)  # n = 19
    assert threshold(scores, 0.1) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert threshold(scores, 0.01) == math.inf  # too few for alpha: nothing unassigned
    assert unassigned(np.array([17.0, 18.0, 18.5]), 18.0).tolist() == [False, False, True]


def test_conformal_sets_leave_an_unseen_class_unassigned(data):
    """A classifier of the three known classes; its LAC sets on cases of the unseen class are
    empty or of several classes (no known class is probable enough): not one class, so unassigned."""
    from sklearn.linear_model import LogisticRegression

    train, y_train, val, y_val, known, novel = data
    model = LogisticRegression(max_iter=2000).fit(train, y_train)
    predictor = conformal.fit("lac", y_val, model.predict_proba(val), alpha=0.05)
    known_sets = predictor.sets(model.predict_proba(known))
    novel_sets = predictor.sets(model.predict_proba(novel))
    assert (known_sets.sum(axis=1) != 1).mean() < 0.1
    assert (novel_sets.sum(axis=1) != 1).mean() > 0.9
