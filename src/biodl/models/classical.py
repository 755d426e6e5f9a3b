"""Classical (scikit-learn) classifiers for tabular data, set up as in Chicco & Jurman 2020.

The authors' R scripts (repository davidechicco/cardiovascular_heart_disease, ``bin/``)
fix the settings the paper leaves open; each choice is noted where it is made. Every
factory takes the split's seed, so a split's result does not depend on which process
computes it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier


__all__ = [
    "OneRuleClassifier", "RegressionClassifier", "KNeighborsTuned", "SVMTuned", "C_GRID", "K_GRID", "random_forest",
    "CLASSIFIERS", "logistic_regression",
]


class OneRuleClassifier(ClassifierMixin, BaseEstimator):
    """One rule (Holte 1993) on numeric data: the single feature and threshold with the best
    training accuracy. Predicts ``1 if x[f] >= t else 0`` (or the reverse, if better).

    Thresholds are midpoints between consecutive distinct values; ties go to the lower
    feature index, then the lower threshold.
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> "OneRuleClassifier":
        X, y = np.asarray(X, dtype=float), np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        best = (-1.0, 0, 0.0, 1)  # accuracy, feature, threshold, sign
        for f in range(X.shape[1]):
            values = np.unique(X[:, f])
            cuts = (values[:-1] + values[1:]) / 2 if len(values) > 1 else values
            above = X[:, f][None, :] >= cuts[:, None]  # (T, N)
            acc_pos = (above == (y[None, :] == 1)).mean(axis=1)
            for sign, acc in ((1, acc_pos), (-1, 1.0 - acc_pos)):
                i = int(np.argmax(acc))
                if acc[i] > best[0]:
                    best = (float(acc[i]), f, float(cuts[i]), sign)
        self.train_accuracy_, self.feature_, self.threshold_, self.sign_ = best
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        above = np.asarray(X, dtype=float)[:, self.feature_] >= self.threshold_
        return (above if self.sign_ == 1 else ~above).astype(int)


class RegressionClassifier(ClassifierMixin, BaseEstimator):
    """A regressor fitted to the 0/1 label, its output thresholded at ``threshold``; its scores
    are the regression outputs. This is what the paper's R code did for linear regression and,
    because the 0/1 outcome was numeric, for R's randomForest too (a regression forest)."""

    def __init__(self, regressor: BaseEstimator | None = None, threshold: float = 0.5) -> None:
        self.regressor, self.threshold = regressor, threshold

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RegressionClassifier":
        from sklearn.base import clone

        self.model_ = clone(self.regressor if self.regressor is not None else LinearRegression()).fit(X, y)
        self.classes_ = np.array([0, 1])
        return self

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.model_.feature_importances_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) >= self.threshold).astype(int)


def _mcc_columns(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """MCC of each column of (N, K) 0/1 predictions against (N,) labels, with the arithmetic of
    ``sklearn.metrics.matthews_corrcoef`` (same floating-point result; 0 when undefined)."""
    n = float(len(y))
    t_sum = np.array([n - y.sum(), y.sum()], dtype=np.float64)
    p1 = pred.sum(axis=0).astype(np.float64)
    p_sum = np.stack([n - p1, p1], axis=1)  # (K, 2)
    correct = (pred == y[:, None]).sum(axis=0).astype(np.float64)
    cov_ytyp = correct * n - p_sum @ t_sum
    cov_ypyp = n * n - (p_sum * p_sum).sum(axis=1)
    cov_ytyt = n * n - t_sum @ t_sum
    denom = cov_ytyt * cov_ypyp
    out = np.zeros(len(p1))
    ok = denom != 0
    out[ok] = cov_ytyp[ok] / np.sqrt(denom[ok])
    return out


def _cv_mcc(X: np.ndarray, y: np.ndarray, n_folds: int, seed: int,
            predict_grid: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """(G,) mean MCC over stratified ``n_folds`` (shuffled with ``seed``, as ``GridSearchCV``'s
    ``cv=StratifiedKFold(n_folds, shuffle=True, random_state=seed)``) of each of G settings:
    ``predict_grid(x_train, y_train, x_val)`` gives a fold's (n_val, G) 0/1 predictions."""
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return np.mean([_mcc_columns(y[va], predict_grid(X[tr], y[tr], X[va])) for tr, va in cv.split(X, y)], axis=0)


class KNeighborsTuned(ClassifierMixin, BaseEstimator):
    """k-nearest neighbours with k chosen by inner stratified k-fold CV on MCC.

    Picks the same k as ``GridSearchCV(KNeighborsClassifier(), {"n_neighbors": k_grid},
    scoring="matthews_corrcoef", cv=StratifiedKFold(5, shuffle=True, random_state=seed))``
    (tested), but queries the neighbours once per fold for the largest k and reads every
    smaller k off that list: 5 neighbour searches instead of 5 x len(k_grid).
    """

    def __init__(self, k_grid: tuple[int, ...] = tuple(range(1, 101)), n_folds: int = 5, seed: int = 0) -> None:
        self.k_grid, self.n_folds, self.seed = k_grid, n_folds, seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> "KNeighborsTuned":
        X, y = np.asarray(X, dtype=float), np.asarray(y).astype(int)
        ks = np.asarray(self.k_grid)

        def every_k(x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray) -> np.ndarray:
            kmax = min(int(ks.max()), len(x_tr))
            nn = KNeighborsClassifier(n_neighbors=kmax).fit(x_tr, y_tr)
            votes = np.cumsum(y_tr[nn.kneighbors(x_va, return_distance=False)], axis=1)  # (n_val, kmax)
            kk = np.minimum(ks, kmax)
            return (2 * votes[:, kk - 1] > kk).astype(int)  # (n_val, len(ks)); ties -> class 0, as sklearn

        self.cv_scores_ = _cv_mcc(X, y, self.n_folds, self.seed, every_k)
        self.best_k_ = int(ks[int(np.argmax(self.cv_scores_))])
        self.model_ = KNeighborsClassifier(n_neighbors=self.best_k_).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)


#: The paper's grid for C (svm_*_classification.r) and for k (knn_classification.r: 1..100).
C_GRID = [0.001, 0.01, 0.1, 1, 10]
K_GRID = list(range(1, 101))


def random_forest(seed: int) -> BaseEstimator:
    """The paper's random forest as its R code ran it: ``randomForest`` on the numeric 0/1
    outcome, i.e. a regression forest with R's regression defaults (500 trees, p/3 features
    per split, nodesize 5: a node of 5 rows or fewer is not split), its mean vote thresholded
    at 0.5."""
    from sklearn.ensemble import RandomForestRegressor

    return RegressionClassifier(RandomForestRegressor(n_estimators=500, max_features=1 / 3, min_samples_split=6,
                                                      random_state=seed))


class SVMTuned(ClassifierMixin, BaseEstimator):
    """A support vector machine on standardised features (e1071::svm's default, ``scale =
    TRUE``) with C chosen by inner stratified k-fold CV on MCC.

    Picks the same C, and gives the same model, as ``GridSearchCV(make_pipeline(StandardScaler(),
    SVC(kernel=kernel, random_state=seed)), {"svc__C": c_grid}, scoring="matthews_corrcoef",
    cv=StratifiedKFold(5, shuffle=True, random_state=seed))`` (tested), but standardises each
    fold once for every C and fits the SVCs directly: a third of the grid search's time, which
    went to cloning, scoring and dispatching 26 small fits.
    """

    def __init__(self, kernel: str = "rbf", c_grid: tuple[float, ...] = tuple(C_GRID), n_folds: int = 5,
                 seed: int = 0) -> None:
        self.kernel, self.c_grid, self.n_folds, self.seed = kernel, c_grid, n_folds, seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SVMTuned":
        X, y = np.asarray(X, dtype=float), np.asarray(y).astype(int)

        def every_c(x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray) -> np.ndarray:
            scaler = StandardScaler().fit(x_tr)
            x_tr, x_va = scaler.transform(x_tr), scaler.transform(x_va)
            return np.column_stack([SVC(kernel=self.kernel, C=c, random_state=self.seed).fit(x_tr, y_tr).predict(x_va)
                                    for c in self.c_grid])  # (n_val, len(c_grid))

        self.cv_scores_ = _cv_mcc(X, y, self.n_folds, self.seed, every_c)
        self.best_c_ = self.c_grid[int(np.argmax(self.cv_scores_))]
        self.model_ = make_pipeline(StandardScaler(), SVC(kernel=self.kernel, C=self.best_c_,
                                                          random_state=self.seed)).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)


#: name -> (label in the paper's Table 4, factory(seed) -> unfitted estimator)
CLASSIFIERS: dict[str, tuple[str, Callable[[int], BaseEstimator]]] = {
    "rf": ("Random forests", random_forest),
    # rpart's defaults: minsplit 20, minbucket 7
    "dt": ("Decision tree", lambda s: DecisionTreeClassifier(min_samples_split=20, min_samples_leaf=7,
                                                             random_state=s)),
    # the paper used XGBoost; scikit-learn's gradient boosting with its defaults stands in
    "gb": ("Gradient boosting", lambda s: GradientBoostingClassifier(random_state=s)),
    "linreg": ("Linear regression", lambda s: RegressionClassifier(LinearRegression())),
    "onerule": ("One rule", lambda s: OneRuleClassifier()),
    # the paper's ANN: one hidden layer of 100 units (its most frequent choice), standardised inputs
    "ann": ("Artificial neural network", lambda s: make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(100,), max_iter=300, random_state=s))),
    "nb": ("Naive bayes", lambda s: GaussianNB()),
    # e1071::svm standardises every feature by default; C by inner CV on MCC over the paper's grid
    "svm_rbf": ("SVM radial", lambda s: SVMTuned("rbf", tuple(C_GRID), seed=s)),
    "svm_linear": ("SVM linear", lambda s: SVMTuned("linear", tuple(C_GRID), seed=s)),
    # class::knn on the raw (unscaled) features, as the authors ran it; k by inner CV on MCC
    "knn": ("k-nearest neighbors", lambda s: KNeighborsTuned(tuple(K_GRID), seed=s)),
}


def logistic_regression(seed: int) -> BaseEstimator:
    """Standardised logistic regression (Table 11 variant)."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
