import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from biodl.evaluation.ranking import borda_count, ranks_from_scores
from biodl.evaluation.stats import bootstrap_ci, describe_by_outcome


def test_borda_hand_worked_example():
    # three rankings of A, B, C (positions, 0 = best)
    #   r1: A > B > C    r2: B > A > C    r3: A > C > B
    positions = np.array([[0, 1, 2], [1, 0, 2], [0, 2, 1]])
    t = borda_count(positions, ["A", "B", "C"])
    # points (3 - p): A = 3 + 2 + 3 = 8, B = 2 + 3 + 1 = 6, C = 1 + 1 + 2 = 4
    assert t["feature"].tolist() == ["A", "B", "C"]
    assert t["points"].tolist() == [8, 6, 4]
    assert t["rank"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(t["mean_position"], [1 + 1 / 3, 2, 2 + 2 / 3])


def test_borda_ties_broken_by_mean_position_then_name():
    # A: positions 0, 2 -> 3 + 1 = 4 points, mean position 2
    # B: positions 1, 1 -> 2 + 2 = 4 points, mean position 2 -> tie on both -> name order
    # with top_k=1: only first places count: A 1, C 1 (C first in r2)... see below
    positions = np.array([[0, 1, 2], [2, 1, 0]])
    t = borda_count(positions, ["B", "A", "C"])  # names in column order
    # B: 3 + 1 = 4, mean 2; A: 2 + 2 = 4, mean 2; C: 1 + 3 = 4, mean 2 -> all tied -> alphabetical
    assert t["feature"].tolist() == ["A", "B", "C"]
    positions = np.array([[0, 2, 1], [1, 2, 0], [0, 1, 2]])
    t = borda_count(positions, ["X", "Y", "Z"])
    # X: 3 + 2 + 3 = 8; Y: 1 + 1 + 2 = 4; Z: 2 + 3 + 1 = 6
    assert t["feature"].tolist() == ["X", "Z", "Y"]


def test_borda_top_k_counts_only_the_top_places():
    positions = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2]])
    t = borda_count(positions, ["a", "b", "c", "d"], top_k=2)
    # points k - p for p < 2: a: 2 + 0 + 1 = 3, b: 1 + 0 + 2 = 3, c: 0 + 1 + 0 = 1, d: 0 + 2 + 0 = 2
    # a and b tie on points; mean positions a: (0+3+1)/3, b: (1+2+0)/3 -> b first
    assert t["feature"].tolist() == ["b", "a", "d", "c"]
    assert t["points"].tolist() == [3, 3, 2, 1]
    with pytest.raises(ValueError, match="top_k"):
        borda_count(positions, ["a", "b", "c", "d"], top_k=5)


def test_ranks_from_scores():
    scores = np.array([[0.1, 0.5, 0.3], [0.9, 0.0, 0.9]])
    np.testing.assert_array_equal(ranks_from_scores(scores), [[2, 0, 1], [0, 2, 1]])  # stable on ties


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    reps = 400
    for r in range(reps):
        sample = rng.exponential(scale=2.0, size=60)  # true mean 2, skewed
        _, lo, hi = bootstrap_ci(sample, n_boot=1000, seed=r)
        hits += lo <= 2.0 <= hi
    coverage = hits / reps
    assert 0.90 <= coverage <= 0.98, coverage  # percentile bootstrap slightly under-covers at n = 60


def test_bootstrap_draws_every_value_including_the_last():
    values = np.array([0.0] * 9 + [1.0])  # only the last value is non-zero
    mean, lo, hi = bootstrap_ci(values, n_boot=2000, seed=0)
    assert mean == pytest.approx(0.1) and hi > 0.1  # the workshop's bug would give hi == 0
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)


def test_describe_by_outcome_matches_scipy():
    df = pd.DataFrame({"y": [0, 0, 0, 0, 1, 1, 1], "x": [1.0, 2, 3, 4, 10, 11, 12], "b": [0, 1, 0, 0, 1, 1, 0]})
    t = describe_by_outcome(df, "y", ["x"], ["b"]).set_index("feature")
    assert t.loc["x", "median_0"] == 2.5 and t.loc["x", "mean_1"] == 11 and t.loc["x", "sd_1"] == 1.0
    assert t.loc["x", "p_value"] == pytest.approx(st.mannwhitneyu([1, 2, 3, 4], [10, 11, 12]).pvalue)
    assert t.loc["b", "count_1"] == 2 and t.loc["b", "percent_0"] == 25.0
    assert t.loc["b", "p_value"] == pytest.approx(st.chi2_contingency([[3, 1], [1, 2]]).pvalue)
