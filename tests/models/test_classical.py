import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from biodl.models.classical import K_GRID, KNeighborsTuned, OneRuleClassifier, RegressionClassifier, random_forest


def test_one_rule_finds_the_feature_and_threshold():
    X = np.array([[5.0, 1.0], [6, 9], [7, 2], [1, 8], [2, 3], [3, 7]])
    y = np.array([1, 1, 1, 0, 0, 0])  # feature 0 separates at (3 + 5) / 2 = 4
    m = OneRuleClassifier().fit(X, y)
    assert (m.feature_, m.threshold_, m.sign_, m.train_accuracy_) == (0, 4.0, 1, 1.0)
    np.testing.assert_array_equal(m.predict(np.array([[3.9, 0], [4.0, 0]])), [0, 1])


def test_one_rule_reversed_direction():
    X = np.array([[1.0], [2], [3], [10], [11], [12]])
    y = np.array([1, 1, 1, 0, 0, 0])  # low values -> class 1
    m = OneRuleClassifier().fit(X, y)
    assert m.sign_ == -1 and m.threshold_ == 6.5 and m.train_accuracy_ == 1.0
    np.testing.assert_array_equal(m.predict(np.array([[0.0], [20.0]])), [1, 0])


def test_one_rule_prefers_the_more_accurate_feature():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    X = np.column_stack([rng.normal(size=200), y + rng.normal(scale=0.3, size=200)])
    assert OneRuleClassifier().fit(X, y).feature_ == 1


def test_linear_regression_classifier_thresholds_at_one_half():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    m = RegressionClassifier().fit(X, y)
    np.testing.assert_allclose(m.decision_function(X), [-0.1, 0.3, 0.7, 1.1])
    np.testing.assert_array_equal(m.predict(X), [0, 0, 1, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tuned_knn_picks_what_grid_search_picks(seed):
    from tests.conftest import HEART
    import pandas as pd

    df = pd.read_csv(HEART)
    X = df.drop(columns=["time", "DEATH_EVENT"]).to_numpy(float)[:240]
    y = df["DEATH_EVENT"].to_numpy()[:240]
    grid = GridSearchCV(KNeighborsClassifier(), {"n_neighbors": K_GRID}, scoring="matthews_corrcoef",
                        cv=StratifiedKFold(5, shuffle=True, random_state=seed)).fit(X, y)
    ours = KNeighborsTuned(tuple(K_GRID), seed=seed).fit(X, y)
    assert ours.best_k_ == grid.best_params_["n_neighbors"]
    np.testing.assert_array_equal(ours.cv_scores_, grid.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(ours.predict_proba(X), grid.predict_proba(X))


def test_random_forest_is_a_thresholded_regression_forest_as_in_r():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = (X[:, 0] > 0).astype(int)
    m = random_forest(3).fit(X, y)
    scores = m.decision_function(X)
    assert 0 <= scores.min() and scores.max() <= 1 and len(np.unique(scores)) > 10  # mean vote, not 0/1
    np.testing.assert_array_equal(m.predict(X), (scores >= 0.5).astype(int))
    assert m.model_.max_features == 1 / 3 and m.model_.min_samples_split == 6 and m.model_.n_estimators == 500
    assert int(np.argmax(m.feature_importances_)) == 0


@pytest.mark.parametrize("kernel,seed,cols", [("rbf", 0, None), ("linear", 1, None), ("rbf", 2, [4, 7])])
def test_tuned_svm_picks_what_grid_search_picks(kernel, seed, cols):
    """Same C, same cross-validated scores and the same decision values as the grid search it
    replaces (on all features, and on serum creatinine and ejection fraction alone)."""
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from biodl.models.classical import C_GRID, SVMTuned
    from tests.conftest import HEART

    df = pd.read_csv(HEART)
    X = df.drop(columns=["time", "DEATH_EVENT"]).to_numpy(float)[seed * 20: seed * 20 + 240]
    X = X if cols is None else X[:, cols]
    y = df["DEATH_EVENT"].to_numpy()[seed * 20: seed * 20 + 240]
    grid = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel=kernel, random_state=seed)), {"svc__C": C_GRID},
                        scoring="matthews_corrcoef", cv=StratifiedKFold(5, shuffle=True, random_state=seed)).fit(X, y)
    ours = SVMTuned(kernel, tuple(C_GRID), seed=seed).fit(X, y)
    assert ours.best_c_ == grid.best_params_["svc__C"]
    np.testing.assert_array_equal(ours.cv_scores_, grid.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(ours.decision_function(X), grid.decision_function(X))
    np.testing.assert_array_equal(ours.predict(X), grid.predict(X))
    assert len(set(grid.cv_results_["mean_test_score"])) > 1  # the grid is not flat: the choice is tested
