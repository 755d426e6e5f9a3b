"""Classification metrics, from torchmetrics (DDP-aware: states are synced across ranks).

Binary metrics take probabilities of the positive class, (N,) floats in [0, 1],
and targets, (N,) integers in {0, 1}.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCohenKappa,
    MulticlassMatthewsCorrCoef,
    BinaryAccuracy,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    BinaryRecall,
    BinarySpecificity,
)

#: name in metrics.json -> what it is
BINARY_METRICS = {
    "mcc": "Matthews correlation coefficient",
    "accuracy": "accuracy at threshold 0.5",
    "f1": "F1 score of the positive class",
    "roc_auc": "area under the ROC curve",
    "pr_auc": "area under the precision-recall curve (average precision)",
    "tpr": "true positive rate (sensitivity, recall)",
    "tnr": "true negative rate (specificity)",
}


def binary_metrics(threshold: float = 0.5) -> MetricCollection:
    """The binary classification metrics of :data:`BINARY_METRICS` as one collection."""
    return MetricCollection(
        {
            "mcc": BinaryMatthewsCorrCoef(threshold=threshold),
            "accuracy": BinaryAccuracy(threshold=threshold),
            "f1": BinaryF1Score(threshold=threshold),
            "roc_auc": BinaryAUROC(),
            "pr_auc": BinaryAveragePrecision(),
            "tpr": BinaryRecall(threshold=threshold),
            "tnr": BinarySpecificity(threshold=threshold),
        },
        compute_groups=False,
    )


#: multiclass metrics: name in metrics.json -> what it is
MULTICLASS_METRICS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy (mean per-class recall)",
    "roc_auc": "macro one-vs-rest ROC AUC",
    "mcc": "multiclass Matthews correlation coefficient",
    "qwk": "quadratic weighted kappa (graded labels only)",
}


def multiclass_metrics(num_classes: int, graded: bool = False) -> MetricCollection:
    """Metrics over (N, C) class probabilities and (N,) targets; QWK when labels are ordered grades."""
    metrics = {
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "balanced_accuracy": MulticlassAccuracy(num_classes, average="macro"),
        "roc_auc": MulticlassAUROC(num_classes, average="macro"),
        "mcc": MulticlassMatthewsCorrCoef(num_classes),
    }
    if graded:
        metrics["qwk"] = MulticlassCohenKappa(num_classes, weights="quadratic")
    return MetricCollection(metrics, compute_groups=False)


def multiclass_scores(y: np.ndarray, prob: np.ndarray, graded: bool = False) -> dict[str, float]:
    """The same metrics with scikit-learn on NumPy arrays (for bootstrap resampling)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, matthews_corrcoef
    from sklearn.metrics import roc_auc_score

    pred = prob.argmax(axis=1)
    out = {"accuracy": accuracy_score(y, pred), "balanced_accuracy": balanced_accuracy_score(y, pred),
           "mcc": matthews_corrcoef(y, pred)}
    present = np.unique(y)
    if len(present) == prob.shape[1]:
        out["roc_auc"] = (roc_auc_score(y, prob[:, 1]) if prob.shape[1] == 2
                          else roc_auc_score(y, prob, multi_class="ovr", average="macro"))
    else:  # a resample that lacks a class: the macro AUC is undefined
        out["roc_auc"] = float("nan")
    if graded:
        out["qwk"] = cohen_kappa_score(y, pred, weights="quadratic")
    return {k: float(v) for k, v in out.items()}


def bootstrap_cis(y: np.ndarray, prob: np.ndarray, score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
                  n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap CIs of each metric of ``score(y, prob)`` over resampled test rows."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        for k, v in score(y[idx], prob[idx]).items():
            draws.setdefault(k, []).append(v)
    a = (1 - level) / 2
    return {k: tuple(float(q) for q in np.nanquantile(v, [a, 1 - a])) for k, v in draws.items()}
