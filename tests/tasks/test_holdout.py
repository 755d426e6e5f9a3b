import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.metrics import make_scorer, matthews_corrcoef
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier

from biodl.tasks.holdout import (Method, binary_scores, conformal_holdout, conformal_summary, holdout_splits,
                                 repeated_holdout)
from biodl.evaluation.importance import permutation_importance
from biodl.report.tables import compare_with_published
from tests.conftest import HEART


def _xy():
    df = pd.read_csv(HEART)
    return df.drop(columns=["time", "DEATH_EVENT"]).to_numpy(float), df["DEATH_EVENT"].to_numpy()


def test_binary_scores_by_hand():
    y = np.array([1, 1, 0, 0, 0])
    labels = np.array([1, 0, 0, 0, 1])
    s = binary_scores(y, labels, np.array([0.9, 0.4, 0.1, 0.2, 0.6]))
    assert s["sensitivity"] == 0.5 and s["specificity"] == pytest.approx(2 / 3) and s["accuracy"] == 0.6
    assert s["f1"] == 0.5
    assert s["mcc"] == pytest.approx((1 * 2 - 1 * 1) / np.sqrt(2 * 2 * 3 * 3))
    assert s["roc_auc"] == pytest.approx(5 / 6)  # 5 of the 6 (pos, neg) pairs ordered correctly


def test_splits_are_stratified_and_seeded():
    _, y = _xy()
    a, b = holdout_splits(y, 3), holdout_splits(y, 3)
    for (tr, te), (_, te2) in zip(a, b, strict=True):
        assert np.array_equal(te, te2) and len(te) == 60 and not set(tr) & set(te)
        assert abs(y[te].mean() - y.mean()) < 0.02
    assert not np.array_equal(a[0][1], a[1][1])
    X, _ = _xy()
    from sklearn.model_selection import train_test_split

    xtr, xte, _, _ = train_test_split(X, y, test_size=0.2, stratify=y, random_state=2)
    np.testing.assert_array_equal(X[a[2][0]], xtr)  # the same rows in the same order
    np.testing.assert_array_equal(X[a[2][1]], xte)


def test_permutation_importance_equals_scikit_learn():
    X, y = _xy()
    rf = RandomForestClassifier(50, random_state=0).fit(X[:240], y[:240])
    expected = sk_permutation_importance(rf, X[240:], y[240:], scoring=make_scorer(matthews_corrcoef), n_repeats=4,
                                         random_state=7).importances_mean
    ours = permutation_importance(rf.predict, X[240:], y[240:], matthews_corrcoef, n_repeats=4, seed=7)
    np.testing.assert_array_equal(ours, expected)


def test_results_do_not_depend_on_the_number_of_workers():
    X, y = _xy()
    splits = holdout_splits(y, 4)
    methods = [Method("dt", "tree", lambda s: DecisionTreeClassifier(random_state=s)),
               Method("nb", "bayes", lambda s: GaussianNB(), columns=[4, 7])]
    one = repeated_holdout(methods, X, y, splits, n_jobs=1)
    two = repeated_holdout(methods, X, y, splits, n_jobs=2)
    for k in ("dt", "nb"):
        pd.testing.assert_frame_equal(one[k].metrics, two[k].metrics)
        assert len(one[k].metrics) == 4 and one[k].metrics["split"].tolist() == [0, 1, 2, 3]
    s = one["dt"].summary(n_boot=200)
    assert s["mcc_ci_low"] <= s["mcc_mean"] <= s["mcc_ci_high"]
    assert s["mcc_mean"] == pytest.approx(one["dt"].metrics["mcc"].mean())


def test_conformal_holdout_covers_and_keeps_the_test_rows_apart():
    """Coverage of LAC and per class of Mondrian sets, over 60 splits of 1,000 synthetic cases,
    is within sampling error of 1 - alpha; the four set shares sum to 1."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = (rng.random(1000) < 0.3).astype(int)
    X = (y[:, None] * 0.8 + rng.normal(size=(1000, 3)))
    splits = holdout_splits(y, 60)
    rows = conformal_holdout(Method("lr", "logistic", lambda s: LogisticRegression()), X, y, splits, alpha=0.2,
                             n_jobs=2)
    assert len(rows) == 120 and set(rows["conformal"]) == {"lac", "mondrian"}
    shares = rows[["share_empty", "share_class0", "share_class1", "share_both"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0)
    # set size = 0 x empty + 1 x singletons + 2 x both
    np.testing.assert_allclose(rows["set_size"], rows["share_class0"] + rows["share_class1"] + 2 * rows["share_both"])
    lac, mondrian = rows[rows["conformal"] == "lac"], rows[rows["conformal"] == "mondrian"]
    # 200 test cases x 60 splits; split conformal is conservative by at most 1/(n_cal + 1)
    assert 0.79 <= lac["coverage"].mean() <= 0.83
    for c in ("coverage_class0", "coverage_class1"):
        assert 0.78 <= mondrian[c].mean() <= 0.85, c
    # LAC under-covers the harder minority class; Mondrian fixes that
    assert lac["coverage_class1"].mean() < mondrian["coverage_class1"].mean()
    table, flat = conformal_summary(rows, ("no", "yes"), n_boot=200)
    assert table["sets"].tolist() == ["LAC (one threshold)", "Mondrian (a threshold per class)"]
    assert "{no, yes}" in table.columns
    assert flat["lac_coverage_mean"] == pytest.approx(lac["coverage"].mean())
    assert flat["lac_coverage_ci_low"] <= flat["lac_coverage_mean"] <= flat["lac_coverage_ci_high"]


def test_compare_with_published_marks_inside_and_outside():
    summaries = {"m": {"mcc_mean": 0.3, "mcc_ci_low": 0.2, "mcc_ci_high": 0.4,
                       "f1_mean": 0.5, "f1_ci_low": 0.45, "f1_ci_high": 0.55}}
    long, wide = compare_with_published(summaries, {"m": {"label": "Model", "mcc": 0.35, "f1": 0.6}},
                                        {"mcc": "MCC", "f1": "F1 score"})
    assert long["paper_in_ci"].tolist() == [True, False]
    assert wide.loc[0, "paper MCC"] == "0.350 in" and wide.loc[0, "paper F1 score"] == "0.600 OUT"
    assert wide.loc[0, "MCC"] == "+0.300 [+0.200, +0.400]" and wide.loc[0, "paper inside our CI"] == "1/2"


def test_interpolated_pr_curve_by_hand():
    from biodl.report.figures import _interp_pr

    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1])
    # thresholds: 0.9 -> P 1, R 0.5; 0.8 -> P 0.5, R 0.5; 0.7 -> P 2/3, R 1; 0.1 -> P 0.5, R 1
    got = _interp_pr(y, s, np.array([0.0, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(got, [1.0, 1.0, 2 / 3, 2 / 3])
