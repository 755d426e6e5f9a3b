"""Classification scores: the confusion counts once (:func:`confusion_counts`) and every threshold
metric from them (:func:`count_scores`); ranking metrics (ROC AUC, average precision); the
engine's DDP-aware torchmetrics collections; segmentation scores inside a field of view.

Binary metrics take probabilities of the positive class, (N,) floats in [0, 1], and targets,
(N,) integers in {0, 1}; multiclass ones (N, K) probabilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .vocabulary import VOCABULARY

if TYPE_CHECKING:
    from torchmetrics import MetricCollection

__all__ = [
    "Counts", "confusion_counts", "count_scores", "BINARY_METRICS", "PREDICTIVE_VALUES", "binary_metrics",
    "MULTICLASS_METRICS", "multiclass_metrics", "roc_auc", "average_precision", "multiclass_scores", "BINARY_EXTRAS",
    "binary_extras", "one_vs_rest_scores", "binary_prob_scores", "f1_optimal_threshold", "fov_scores", "per_class_f1",
]


class Counts(NamedTuple):
    """The confusion counts of a binary decision (floats, so the ratios are exact divisions)."""

    tp: float
    fp: float
    fn: float
    tn: float


def confusion_counts(positive: np.ndarray, called: np.ndarray) -> Counts:
    """Counts of (N,) bool truths ``positive`` against (N,) bool decisions ``called``."""
    positive, called = np.asarray(positive, bool), np.asarray(called, bool)
    tp, fp = float(np.sum(called & positive)), float(np.sum(called & ~positive))
    fn = float(np.sum(positive)) - tp
    return Counts(tp, fp, fn, float(len(positive)) - tp - fp - fn)


def count_scores(c: Counts) -> dict[str, float]:
    """The threshold metrics of :data:`VOCABULARY` from confusion counts: accuracy, balanced
    accuracy, sensitivity, specificity, precision, NPV, F1, MCC.

    A rate over a class that is absent (sensitivity without positives, specificity without
    negatives) is undefined: NaN, and so are balanced accuracy and MCC then. Precision, NPV and
    F1 over no decisions of their kind are 0 (scikit-learn's and torchmetrics' convention), and
    MCC is 0 when both classes are present but every decision is the same."""
    tp, fp, fn, tn = c
    nan = float("nan")
    sens = tp / (tp + fn) if tp + fn else nan
    spec = tn / (tn + fp) if tn + fp else nan
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = float((tp * tn - fp * fn) / denom) if denom else 0.0 if tp + fn and tn + fp else nan
    return {"accuracy": (tp + tn) / (tp + fp + fn + tn), "balanced_accuracy": (sens + spec) / 2,
            "sensitivity": sens, "specificity": spec,
            "precision": tp / (tp + fp) if tp + fp else 0.0, "npv": tn / (tn + fn) if tn + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0, "mcc": mcc}


#: the binary metrics the engine logs each epoch (tabular runs): name -> what it is
BINARY_METRICS = {k: VOCABULARY[k] for k in ("mcc", "accuracy", "f1", "roc_auc", "pr_auc", "sensitivity",
                                              "specificity")}


#: what a binary test report adds: the predictive values a clinician reads off a positive or a negative call
PREDICTIVE_VALUES = ("precision", "npv")


def binary_metrics(threshold: float = 0.5) -> MetricCollection:
    """The binary classification metrics of :data:`BINARY_METRICS` as one collection."""
    from torchmetrics import MetricCollection  # here, so that the vocabulary costs no torch import
    from torchmetrics.classification import (BinaryAccuracy, BinaryAUROC, BinaryAveragePrecision, BinaryF1Score,
                                             BinaryMatthewsCorrCoef, BinaryRecall, BinarySpecificity)

    return MetricCollection(
        {
            "mcc": BinaryMatthewsCorrCoef(threshold=threshold),
            "accuracy": BinaryAccuracy(threshold=threshold),
            "f1": BinaryF1Score(threshold=threshold),
            "roc_auc": BinaryAUROC(),
            "pr_auc": BinaryAveragePrecision(),
            "sensitivity": BinaryRecall(threshold=threshold),
            "specificity": BinarySpecificity(threshold=threshold),
        },
        compute_groups=False,
    )


#: the metrics the engine logs each epoch for K classes (image runs; ``qwk`` for graded labels only)
MULTICLASS_METRICS = {k: VOCABULARY[k] for k in ("accuracy", "balanced_accuracy", "roc_auc", "mcc", "qwk")}


def multiclass_metrics(num_classes: int, graded: bool = False) -> MetricCollection:
    """Metrics over (N, C) class probabilities and (N,) targets; QWK when labels are ordered grades."""
    from torchmetrics import MetricCollection
    from torchmetrics.classification import (MulticlassAccuracy, MulticlassAUROC, MulticlassCohenKappa,
                                             MulticlassMatthewsCorrCoef)

    metrics = {
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "balanced_accuracy": MulticlassAccuracy(num_classes, average="macro"),
        "roc_auc": MulticlassAUROC(num_classes, average="macro"),
        "mcc": MulticlassMatthewsCorrCoef(num_classes),
    }
    if graded:
        metrics["qwk"] = MulticlassCohenKappa(num_classes, weights="quadratic")
    return MetricCollection(metrics, compute_groups=False)


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for (N,) bool ``positive`` (the Mann-Whitney U
    statistic over average ranks, so ties count a half, as scikit-learn's ``roc_auc_score``);
    NaN when one class is absent."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Average precision (PR AUC) of ``score`` for (N,) bool ``positive``: the sum over distinct
    thresholds, from the highest, of the recall gained times the precision there (scikit-learn's
    ``average_precision_score``); NaN when no sample is positive."""
    order = np.argsort(-score, kind="stable")
    hits = positive[order]
    if not hits.any():
        return float("nan")
    last = np.r_[np.flatnonzero(np.diff(score[order])), len(score) - 1]  # the last row of each distinct score
    tps = np.cumsum(hits)[last]
    precision, recall = tps / (last + 1), tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(K, K) counts, rows true class, columns predicted."""
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)


def _mcc(cm: np.ndarray) -> float:
    """Matthews correlation of a confusion matrix (Gorodkin's K-class form; 0 when a marginal is
    constant, as scikit-learn)."""
    n, correct = cm.sum(), np.trace(cm)
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    denom = np.sqrt((n * n - t @ t) * (n * n - p @ p))
    return float((correct * n - t @ p) / denom) if denom else 0.0


def _quadratic_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights over the K grades (weights from the grades, so a
    resample missing a middle grade is still weighed by grade distance)."""
    k = len(cm)
    w = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / cm.sum()
    denom = float((w * expected).sum())
    return 1.0 - float((w * cm).sum()) / denom if denom else float("nan")


def multiclass_scores(y: np.ndarray, prob: np.ndarray, graded: bool = False) -> dict[str, float]:
    """The engine's metrics on NumPy arrays (for bootstrap resampling; from one confusion matrix
    and the ranks, so a thousand resamples take seconds): accuracy, balanced accuracy, MCC, ROC
    AUC (two classes: of class 1; more: the macro mean one-vs-rest, NaN when a class is absent),
    with ``graded`` the quadratic kappa, and for two classes :func:`binary_extras`."""
    y = np.asarray(y).astype(np.int64)
    k = prob.shape[1]
    pred = prob.argmax(axis=1)
    cm = _confusion(y, pred, k)
    support = cm.sum(axis=1)
    out = {"accuracy": float(np.trace(cm) / len(y)),
           "balanced_accuracy": float(np.mean(np.diag(cm)[support > 0] / support[support > 0])), "mcc": _mcc(cm)}
    if k == 2:
        out["roc_auc"] = roc_auc(y == 1, prob[:, 1])
    else:
        out["roc_auc"] = float(np.mean([roc_auc(y == c, prob[:, c]) for c in range(k)])) if (support > 0).all() \
            else float("nan")
    if graded:
        out["qwk"] = _quadratic_kappa(cm)
    if k == 2:  # two classes: what the field reports for the positive class (class 1)
        out.update(binary_extras(y, prob[:, 1], pred))
    return out


def per_class_f1(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(k,) F1 of each class (one against the rest) from labels and predicted classes; NaN for a
    class absent from ``y`` (its F1 is undefined there, not 0)."""
    cm = _confusion(np.asarray(y).astype(np.int64), np.asarray(pred).astype(np.int64), k)
    tp, support, called = np.diag(cm).astype(float), cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / (support + called)
    return np.where(support > 0, f1, np.nan)


#: the positive class's metrics that two-class image runs add (from :func:`multiclass_scores`)
BINARY_EXTRAS = ("f1", "precision", "npv", "sensitivity", "specificity", "pr_auc")


def binary_extras(y: np.ndarray, p1: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """:data:`BINARY_EXTRAS`: F1, precision, NPV, sensitivity and specificity of class 1 at the
    argmax ``pred`` (see :func:`count_scores`), and its average precision (PR AUC; NaN when ``y``
    lacks a class)."""
    pos = y == 1
    c = count_scores(confusion_counts(pos, pred == 1))
    both = 0 < int(pos.sum()) < len(y)
    return {**{k: c[k] for k in BINARY_EXTRAS[:-1]}, "pr_auc": average_precision(pos, p1) if both else float("nan")}


def one_vs_rest_scores(y: np.ndarray, prob: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-class ROC AUC and average precision of (N, K) probabilities, one class against the
    rest (NaN for a class that is absent from ``y`` or is all of it)."""
    auc, ap = [], []
    for k in range(prob.shape[1]):
        pos = y == k
        ok = 0 < pos.sum() < len(y)
        auc.append(roc_auc(pos, prob[:, k]) if ok else float("nan"))
        ap.append(average_precision(pos, prob[:, k]) if ok else float("nan"))
    return auc, ap


def binary_prob_scores(y: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The :data:`BINARY_METRICS` and :data:`PREDICTIVE_VALUES` on NumPy arrays (for bootstrap
    resampling), from (N,) 0/1 labels and (N,) probabilities of class 1 or (N, 2) probabilities.
    When ``y`` holds one class only,
    the areas and the MCC are undefined (NaN), and so is the rate of the missing class (see
    :func:`count_scores`)."""
    p = prob[:, 1] if prob.ndim == 2 else prob
    y = np.asarray(y).astype(bool)
    c = count_scores(confusion_counts(y, p >= threshold))
    both = 0 < y.sum() < len(y)
    return {"mcc": c["mcc"], "accuracy": c["accuracy"], "f1": c["f1"],
            "roc_auc": roc_auc(y, p) if both else float("nan"),
            "pr_auc": average_precision(y, p) if both else float("nan"),
            "sensitivity": c["sensitivity"], "specificity": c["specificity"],
            "precision": c["precision"], "npv": c["npv"]}


def f1_optimal_threshold(probs: list[np.ndarray], masks: list[np.ndarray], fovs: list[np.ndarray],
                         bins: int = 1000) -> float:
    """The threshold (to 1/``bins``) that maximises F1 over the pooled FOV pixels of (H, W)
    probability maps ``probs`` against bool ``masks``, inside bool fields of view ``fovs``."""
    pos = np.zeros(bins + 1)
    neg = np.zeros(bins + 1)
    for p, m, f in zip(probs, masks, fovs, strict=True):
        q = np.clip(np.round(p[f] * bins).astype(int), 0, bins)
        pos += np.bincount(q[m[f]], minlength=bins + 1)
        neg += np.bincount(q[~m[f]], minlength=bins + 1)
    tp = np.cumsum(pos[::-1])[::-1]  # predicted positive: prob >= t
    fp = np.cumsum(neg[::-1])[::-1]
    f1 = 2 * tp / np.maximum(2 * tp + fp + (pos.sum() - tp), 1)
    return float(np.argmax(f1) / bins)


def fov_scores(prob: np.ndarray, mask: np.ndarray, fov: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    """FOV-only metrics of a probability (or binary) map against ``mask``: ``roc_auc``,
    ``pr_auc`` (average precision), and at each threshold (``{"_opt": t}`` -> ``f1_opt``...)
    F1 (= Dice), sensitivity, specificity and accuracy (see :func:`count_scores`)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    p, y = prob[fov].astype(np.float64), mask[fov]
    both = 0 < y.sum() < len(y)  # the areas are undefined (NaN, written null) without vessels or background
    out = {"roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
           "pr_auc": float(average_precision_score(y, p)) if both else float("nan")}
    for name, t in thresholds.items():
        c = count_scores(confusion_counts(y, p >= t))
        out.update({f"{k}{name}": c[k] for k in ("f1", "sensitivity", "specificity", "accuracy")})
    return out
