"""Repeated hold-out evaluation of classifiers, in parallel, with identical results for any
number of workers.

Split ``i`` is a stratified 80/20 split drawn with seed ``i``; the classifier for split
``i`` is built with seed ``i``. Tasks (one per method and split) run in joblib worker
processes with one thread each (no nested oversubscription); each task's result depends
only on its own inputs, so ``n_jobs`` changes the wall time and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.metrics import average_precision_score, matthews_corrcoef, roc_auc_score
from sklearn.model_selection import train_test_split

from ..evaluation import confusion_counts, count_scores
from ..evaluation.importance import permutation_importance
from ..evaluation.stats import bootstrap_ci

__all__ = [
    "METRICS", "holdout_splits", "binary_scores", "predict_labels_and_scores", "Method", "HoldoutResult",
    "forest_inspect", "repeated_holdout", "probabilities", "SET_SHAPES", "conformal_holdout", "conformal_summary",
]


#: metric key (biodl's vocabulary, :data:`biodl.evaluation.VOCABULARY`) -> column title of the paper's tables
METRICS = {"mcc": "MCC", "f1": "F1 score", "accuracy": "Accuracy", "sensitivity": "TP rate", "specificity": "TN rate",
           "pr_auc": "PR AUC", "roc_auc": "ROC AUC"}


def holdout_splits(y: np.ndarray, n_splits: int = 100, test_size: float = 0.2) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` stratified (train, test) index pairs; split i uses seed i.

    The rows keep the order ``train_test_split`` draws them in, so split i is exactly
    ``train_test_split(X, y, test_size=test_size, stratify=y, random_state=i)`` (row order
    matters to order-sensitive learners such as bootstrap forests).
    """
    idx = np.arange(len(y))
    return [tuple(train_test_split(idx, test_size=test_size, stratify=y, random_state=i)) for i in range(n_splits)]


def binary_scores(y_true: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The seven metrics of the paper (positive class 1). ``labels``: (N,) 0/1 predictions at the
    decision threshold; ``scores``: (N,) continuous scores for the ROC and PR curves. The
    paper's TP and TN rates are the sensitivity and the specificity."""
    y_true, labels = np.asarray(y_true).astype(int), np.asarray(labels).astype(int)
    c = count_scores(confusion_counts(y_true == 1, labels == 1))
    return {
        **{k: c[k] for k in ("mcc", "f1", "accuracy", "sensitivity", "specificity")},
        "pr_auc": float(average_precision_score(y_true, scores)),
        "roc_auc": float(roc_auc_score(y_true, scores)),
        # the same two areas from the 0/1 labels: what the paper reports for some methods
        # (an ROC AUC from labels is (TP rate + TN rate) / 2)
        "pr_auc_labels": float(average_precision_score(y_true, labels)),
        "roc_auc_labels": float(roc_auc_score(y_true, labels)),
    }


def predict_labels_and_scores(est: BaseEstimator, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and continuous scores. With ``predict_proba`` the labels are its argmax
    (what ``predict`` returns for these estimators) so the model is evaluated once."""
    if hasattr(est, "predict_proba"):
        proba = est.predict_proba(X)
        return est.classes_[np.argmax(proba, axis=1)], proba[:, list(est.classes_).index(1)]
    labels = est.predict(X)
    scores = est.decision_function(X) if hasattr(est, "decision_function") else labels.astype(float)
    return labels, scores


@dataclass
class Method:
    """A named classifier under the protocol: ``factory(seed)`` builds it, ``columns`` picks
    its features, ``inspect(fitted, X_train, y_train, X_test, y_test, seed)`` may return extra
    per-split results; ``fit_predict(X_train, y_train, X_test, seed) -> (labels, scores, fitted)``
    replaces ``factory(seed).fit`` for models trained another way (e.g. by the biodl engine)."""

    name: str
    label: str
    factory: Callable[[int], Any]
    columns: list[int] | None = None
    inspect: Callable[..., dict[str, Any]] | None = None
    fit_predict: Callable[..., tuple[np.ndarray, np.ndarray, Any]] | None = None  # custom training


@dataclass
class HoldoutResult:
    """Per-split metrics (one row per split) and what is needed for curves and importances."""

    method: Method
    metrics: pd.DataFrame
    y_true: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_extras(cls, result: "HoldoutResult", key: str, label: str) -> "HoldoutResult":
        """The result of a model fitted inside another's ``inspect`` (``extras[i][key]`` holding
        its ``metrics`` and ``scores`` on split i)."""
        extras = [e[key] for e in result.extras]
        return cls(Method(key, label, None), pd.DataFrame([e["metrics"] for e in extras]), result.y_true,
                   [e["scores"] for e in extras])

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
        """``{metric}_mean``, ``{metric}_ci_low``, ``{metric}_ci_high`` (bootstrap over splits)."""
        out = {}
        for key in self.metrics.columns.drop("split", errors="ignore"):
            mean, low, high = bootstrap_ci(self.metrics[key].to_numpy(), n_boot=n_boot, seed=seed)
            out.update({f"{key}_mean": mean, f"{key}_ci_low": low, f"{key}_ci_high": high})
        return out


def forest_inspect(factory: Callable[[int], Any], fixed: list[int], repeats: int = 5) -> Callable[..., dict[str, Any]]:
    """A :class:`Method` ``inspect`` for a forest on all features. Per split: its impurity
    importances (``impurity``), permutation importances on MCC (``permutation``), and two
    forests on two features each, scored on the split's test rows: the ``fixed`` pair chosen in
    advance (``rf_2f``) and the top 2 by importance on this training split only
    (``rf_top2_train``; the same model, fitted once, when the pairs agree)."""

    def two_feature(cols, x_train, y_train, x_test, y_test, seed) -> dict[str, Any]:
        forest = factory(seed).fit(x_train[:, cols], y_train)
        labels, scores = predict_labels_and_scores(forest, x_test[:, cols])
        return {"metrics": binary_scores(y_test, labels, scores), "scores": scores}

    def inspect(forest, x_train, y_train, x_test, y_test, seed) -> dict[str, Any]:
        imp = forest.feature_importances_
        top = sorted(np.argsort(-imp, kind="stable")[:2].tolist())
        data = (x_train, y_train, x_test, y_test, seed)
        pair = two_feature(fixed, *data)
        return {"impurity": imp, "rf_2f": pair, "rf_top2_train": pair if top == fixed else two_feature(top, *data),
                "permutation": permutation_importance(forest.predict, x_test, y_test, matthews_corrcoef, repeats,
                                                      seed)}

    return inspect


def _one_split(method: Method, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
               seed: int) -> tuple[dict[str, float], np.ndarray, dict[str, Any]]:
    cols = method.columns if method.columns is not None else list(range(X.shape[1]))
    Xtr, Xte = X[np.ix_(train, cols)], X[np.ix_(test, cols)]
    if method.fit_predict is not None:
        labels, scores, fitted = method.fit_predict(Xtr, y[train], Xte, seed)
    else:
        fitted = method.factory(seed).fit(Xtr, y[train])
        labels, scores = predict_labels_and_scores(fitted, Xte)
    extras = method.inspect(fitted, Xtr, y[train], Xte, y[test], seed) if method.inspect else {}
    return binary_scores(y[test], labels, scores), np.asarray(scores, dtype=float), extras


def _task(method: Method, X, y, split, seed, one=None):
    """``one(method, X, y, train, test, seed)`` (default: the split's metrics) in a worker: one
    thread, scikit-learn's re-validation and convergence warnings off."""
    import warnings

    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    # the factories' parameters are fixed and tested, and the data were checked finite when read:
    # skipping scikit-learn's per-fit re-validation saves ~20% of a 500-tree forest's fit
    with threadpool_limits(1), warnings.catch_warnings(), sklearn.config_context(
            skip_parameter_validation=True, assume_finite=True):
        # e.g. the MLP's "maximum iterations reached": expected with the paper's settings; once per split
        # it would bury the results
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:  # pragma: no cover
            pass
        return (one or _one_split)(method, X, y, split[0], split[1], seed)


def repeated_holdout(methods: list[Method], X: np.ndarray, y: np.ndarray,
                     splits: list[tuple[np.ndarray, np.ndarray]], n_jobs: int = -1,
                     progress: bool = False) -> dict[str, HoldoutResult]:
    """Evaluate every method on every split, ``n_jobs`` worker processes (-1: all cores), with a
    progress bar when ``progress``."""
    from joblib import Parallel, delayed
    from ..progress import progress_bar

    tasks = [(m, i) for m in methods for i in range(len(splits))]
    runner = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)
    results = []
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("methods x splits", total=len(tasks))
        for res in runner(delayed(_task)(m, X, y, splits[i], i) for m, i in tasks):
            results.append(res)
            bar.advance(task)
    out: dict[str, HoldoutResult] = {}
    for (m, i), (metrics, scores, extras) in zip(tasks, results, strict=True):
        r = out.setdefault(m.name, HoldoutResult(m, pd.DataFrame()))
        r.y_true.append(y[splits[i][1]])
        r.scores.append(scores)
        r.extras.append(extras)
        r.metrics = pd.concat([r.metrics, pd.DataFrame([{"split": i, **metrics}])], ignore_index=True)
    return out


def probabilities(est: BaseEstimator, X: np.ndarray) -> np.ndarray:
    """(N, 2) class probabilities of a fitted binary classifier: ``predict_proba``, or a
    regression-style score in [0, 1] (a regression forest's mean vote) as P(class 1)."""
    if hasattr(est, "predict_proba"):
        proba = est.predict_proba(X)
        return proba[:, [list(est.classes_).index(0), list(est.classes_).index(1)]]
    p1 = np.clip(est.decision_function(X), 0.0, 1.0)
    return np.column_stack([1 - p1, p1])


def _conformal_split(method: Method, X, y, train, test, seed, alpha: float, kinds: tuple[str, ...],
                     calibration_fraction: float) -> list[dict[str, float]]:
    from ..trust import conformal

    proper, cal = train_test_split(train, test_size=calibration_fraction, stratify=y[train], random_state=seed)
    cols = method.columns if method.columns is not None else list(range(X.shape[1]))
    fitted = method.factory(seed).fit(X[np.ix_(proper, cols)], y[proper])
    p_cal, p_test = probabilities(fitted, X[np.ix_(cal, cols)]), probabilities(fitted, X[np.ix_(test, cols)])
    rows = []
    for kind in kinds:
        member = conformal.fit(kind, y[cal], p_cal, alpha, seed=seed).sets(p_test)
        shape = member[:, 0].astype(int) + 2 * member[:, 1].astype(int)  # 0 empty, 1 {0}, 2 {1}, 3 both
        rows.append({"conformal": kind, **conformal.set_scores(y[test], member),
                     **{f"share_{name}": float(np.mean(shape == v)) for v, name in enumerate(SET_SHAPES)}})
    return rows


#: the four possible sets of a binary classifier, in the order of the ``share_*`` columns
SET_SHAPES = ("empty", "class0", "class1", "both")


def conformal_holdout(method: Method, X: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]],
                      alpha: float = 0.1, kinds: tuple[str, ...] = ("lac", "mondrian"),
                      calibration_fraction: float = 0.25, n_jobs: int = -1) -> pd.DataFrame:
    """Split-conformal prediction sets of a binary classifier under the repeated hold-out. On split
    i the training rows are split again (stratified, seed i): the classifier is fitted on the
    proper training part, each conformal predictor (``kinds``) on the calibration part
    (``calibration_fraction`` of the training rows), and the sets are scored on the split's test
    rows, which neither saw. One row per (split, kind): ``coverage``, ``coverage_class<k>``,
    ``set_size``, ``empty_sets`` and the share of each set (``share_empty``, ``share_class0``,
    ``share_class1``, ``share_both``)."""
    from functools import partial

    from joblib import Parallel, delayed

    one = partial(_conformal_split, alpha=alpha, kinds=kinds, calibration_fraction=calibration_fraction)
    results = Parallel(n_jobs=n_jobs)(delayed(_task)(method, X, y, split, i, one) for i, split in enumerate(splits))
    return pd.DataFrame([{"split": i, **row} for i, rows in enumerate(results) for row in rows])


def conformal_summary(sets: pd.DataFrame, classes: tuple[str, str], n_boot: int = 1000,
                      seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """:func:`conformal_holdout`'s rows as a table (one row per kind, mean [95% bootstrap CI]
    over the splits) and flat metrics ``<kind>_<score>_{mean,ci_low,ci_high}``."""
    titles = {"coverage": "coverage", "coverage_class0": f"coverage ({classes[0]})",
              "coverage_class1": f"coverage ({classes[1]})", "set_size": "mean set size",
              "share_class0": f"{{{classes[0]}}}", "share_class1": f"{{{classes[1]}}}",
              "share_both": f"{{{classes[0]}, {classes[1]}}}", "share_empty": "empty"}
    names = {"lac": "LAC (one threshold)", "aps": "APS", "mondrian": "Mondrian (a threshold per class)"}
    rows, flat = [], {}
    for kind, part in sets.groupby("conformal", sort=False):
        row = {"sets": names.get(kind, kind)}
        for key, title in titles.items():
            mean, low, high = bootstrap_ci(part[key].to_numpy(), n_boot=n_boot, seed=seed)
            row[title] = f"{mean:.3f} [{low:.3f}, {high:.3f}]"
            flat.update({f"{kind}_{key}_mean": mean, f"{kind}_{key}_ci_low": low, f"{kind}_{key}_ci_high": high})
        rows.append(row)
    return pd.DataFrame(rows), flat
