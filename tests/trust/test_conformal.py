"""Split-conformal sets: coverage over many random calibration/test splits is 1 - alpha on
average (every method, every class for Mondrian), ordinal sets are contiguous, and what cannot
be fitted is refused."""

import numpy as np
import pytest

from biodl.trust import conformal
from biodl.errors import ConfigError, DataError


def _cases(n, k=4, seed=0):
    """Labels from softmax(L) and a model that is too sure (softmax(2 L)), with rare class k-1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 1.2
    logits[:, -1] -= 1.0
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(truth, 1)).sum(1)
    model = np.exp(2 * logits) / np.exp(2 * logits).sum(1, keepdims=True)
    return y, model


@pytest.mark.parametrize("method", ["lac", "aps", "mondrian", "ordinal"])
def test_mean_coverage_over_200_random_splits_is_one_minus_alpha(method):
    y, prob = _cases(4000)
    alpha, rng = 0.1, np.random.default_rng(1)
    cover, per_class, sizes = [], [], []
    for split in range(200):
        perm = rng.permutation(len(y))
        cal, test = perm[:1000], perm[1000:2000]
        pred = conformal.fit(method, y[cal], prob[cal], alpha, seed=split)
        s = conformal.set_scores(y[test], pred.sets(prob[test], seed=10_000 + split))
        cover.append(s["coverage"])
        per_class.append([s[f"coverage_class{c}"] for c in range(4)])
        sizes.append(s["set_size"])
    assert np.mean(cover) == pytest.approx(1 - alpha, abs=0.01)
    if method == "mondrian":  # every class, the rare one too
        np.testing.assert_allclose(np.mean(per_class, axis=0), 1 - alpha, atol=0.01)
    assert 1 <= np.mean(sizes) < 4


def test_ordinal_sets_are_contiguous_and_lac_sets_are_the_likely_classes():
    y, prob = _cases(600, k=5)
    member = conformal.fit("ordinal", y[:300], prob[:300], 0.1).sets(prob[300:])
    for row in member:
        idx = np.flatnonzero(row)
        assert len(idx) == 0 or np.array_equal(idx, np.arange(idx[0], idx[-1] + 1))  # no grade skipped
    lac = conformal.fit("lac", y[:300], prob[:300], 0.1)
    q = lac.threshold[0]
    np.testing.assert_array_equal(lac.sets(prob[300:]), prob[300:] >= 1 - q)
    assert conformal.describe(np.array([[True, False, True], [False] * 3]), ["a", "b", "c"]) == ["{a, c}", "{}"]


def test_too_few_calibration_cases_give_every_class_and_bad_input_is_refused():
    y, prob = _cases(50)
    pred = conformal.fit("lac", y[:5], prob[:5], 0.1)  # ceil(6 * 0.9) = 6 > 5 cases
    assert pred.threshold == [None] and pred.sets(prob).all()
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        conformal.fit("lac", y, prob, alpha=1.0)
    with pytest.raises(ConfigError, match="unknown conformal method"):
        conformal.fit("raps", y, prob)
    with pytest.raises(DataError, match="no calibration cases"):
        conformal.fit("aps", y[:0], prob[:0])
