"""Classical cell classifiers and rejection rules, for comparison with a cells run under the
same splits (Abdelaal et al. 2019: a linear SVM is the one to beat; the share of cells a method
leaves unassigned is reported beside its F1).

Every baseline sees the same preprocessing as the network (:class:`~biodl.omics.cells.CellPreprocess`
fitted on the training cells). Rejection compares, on the same cells, the novelty scores of
:mod:`biodl.trust.novelty` (thresholds set on validation cells of the known classes) with the
SVM's own rejection (its largest decision value below a threshold set the same way).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..trust.novelty import NoveltyScore, threshold, unassigned

__all__ = ["BASELINES", "fit_baselines", "reject"]


def _svm(seed: int) -> Any:
    from sklearn.svm import LinearSVC

    return LinearSVC(C=1.0, max_iter=10_000, random_state=seed)


def _knn(seed: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=10)


def _forest(seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)


def _logistic(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=seed)


#: name -> a factory of the scikit-learn classifier (seeded), as Abdelaal et al. set them up
BASELINES: dict[str, Callable[[int], Any]] = {"linear SVM": _svm, "k-nearest neighbours (k=10)": _knn,
                                              "random forest (100 trees)": _forest,
                                              "logistic regression": _logistic}


def fit_baselines(x_train: np.ndarray, y_train: np.ndarray, tests: dict[str, np.ndarray], seed: int = 0,
                  names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each baseline fitted on (N, F) training features: name -> {"predicted": {test name: (M,)
    classes}, "decision": {test name: (M,) largest decision value or probability}, "seconds",
    "model"}."""
    out = {}
    for name in names or list(BASELINES):
        start = time.perf_counter()
        model = BASELINES[name](seed).fit(x_train, y_train)
        rank = model.decision_function if hasattr(model, "decision_function") else model.predict_proba
        out[name] = {"predicted": {k: model.predict(x) for k, x in tests.items()},
                     "decision": {k: np.asarray(rank(x)).max(axis=1) for k, x in tests.items()},
                     "seconds": time.perf_counter() - start, "model": model}
    return out


def reject(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
           tests: dict[str, tuple[np.ndarray, np.ndarray]], alpha: float = 0.05,
           decision: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
           sets: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """The share of each test set's cells left unassigned by each rule: rule -> {test name:
    share}. ``train`` is (features, labels) of the training cells, ``val`` (features,
    probabilities) of validation cells of the known classes (the thresholds: at most ``alpha``
    of them unassigned), ``tests`` name -> (features, probabilities); ``decision`` adds the
    SVM's rule ((validation decision values, test name -> decision values): unassigned below
    the threshold), ``sets`` the conformal sets' (test name -> (M, K) membership: unassigned
    unless exactly one class)."""
    out: dict[str, dict[str, float]] = {}
    for kind in ("max_probability", "knn", "mahalanobis"):
        novelty = NoveltyScore(kind).fit(*train)
        cut = threshold(novelty.score(*val), alpha)
        out[kind] = {k: float(unassigned(novelty.score(f, p), cut).mean()) for k, (f, p) in tests.items()}
    if decision is not None:
        cut = threshold(-decision[0], alpha)
        out["SVM decision value"] = {k: float(unassigned(-v, cut).mean()) for k, v in decision[1].items()}
    if sets is not None:
        out["conformal set"] = {k: float((m.sum(axis=1) != 1).mean()) for k, m in sets.items()}
    return out
