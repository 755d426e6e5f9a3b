"""Classification metrics (torchmetrics, DDP-aware: states are synced across ranks; NumPy
versions for the bootstrap), and segmentation metrics inside a field of view.

One vocabulary: every task writes the same quantity under the same key (:data:`VOCABULARY`;
``tpr``, ``recall``, ``auc``... are :data:`ALIASES`, which :func:`canonical` maps, so older run
directories and configs still read). Threshold metrics come from one place: the confusion counts
(:func:`confusion_counts`) and :func:`count_scores`.

Binary metrics take probabilities of the positive class, (N,) floats in [0, 1],
and targets, (N,) integers in {0, 1}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from torchmetrics import MetricCollection

__all__ = [
    "VOCABULARY", "ALIASES", "canonical", "Counts", "confusion_counts", "count_scores",
    "BINARY_METRICS", "PREDICTIVE_VALUES", "binary_metrics", "MULTICLASS_METRICS", "multiclass_metrics", "roc_auc",
    "average_precision", "bootstrap_counts", "curve_bands",
    "multiclass_scores", "BINARY_EXTRAS", "binary_extras", "bootstrap_cis", "calibration_bins", "calibration_scores",
    "one_vs_rest_scores", "binary_prob_scores", "f1_optimal_threshold", "fov_scores",
]


#: canonical metric name (the key in every metrics.json, metrics.csv and table) -> what it is
VOCABULARY = {
    "accuracy": "accuracy: (TP + TN) / N",
    "balanced_accuracy": "balanced accuracy: the mean over classes of each class's sensitivity",
    "sensitivity": "sensitivity (true positive rate, recall): TP / (TP + FN)",
    "specificity": "specificity (true negative rate): TN / (TN + FP)",
    "precision": "precision (positive predictive value): TP / (TP + FP)",
    "npv": "negative predictive value: TN / (TN + FN)",
    "f1": "F1 score of the positive class (= Dice): 2TP / (2TP + FP + FN)",
    "mcc": "Matthews correlation coefficient",
    "roc_auc": "area under the ROC curve (more than two classes: the macro one-vs-rest mean)",
    "pr_auc": "area under the precision-recall curve (average precision)",
    "qwk": "quadratic weighted kappa (graded labels)",
    "ece": "expected calibration error",
    "brier": "Brier score",
    "nll": "negative log-likelihood of the true class",
}

#: another name for a quantity of :data:`VOCABULARY` -> its canonical name
ALIASES = {"tpr": "sensitivity", "recall": "sensitivity", "tnr": "specificity", "ppv": "precision", "dice": "f1",
           "auc": "roc_auc", "macro_auc": "roc_auc", "average_precision": "pr_auc"}


def canonical(key: str) -> str:
    """A metric key in the vocabulary: the name after the last ``/`` is renamed when it is an
    alias or starts with one and ``_`` (``test/tpr_ci_low`` -> ``test/sensitivity_ci_low``,
    ``human/auc`` -> ``human/roc_auc``); any other key comes back as it is."""
    head, sep, name = key.rpartition("/")
    for alias in sorted(ALIASES, key=len, reverse=True):
        if name == alias or name.startswith(alias + "_"):
            return f"{head}{sep}{ALIASES[alias]}{name[len(alias):]}"
    return key


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


def bootstrap_counts(n: int, n_boot: int = 200, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """(n_boot, n) how many times each of n rows is drawn in each bootstrap resample: n rows
    with replacement, or with ``groups`` ((n,) cluster ids, e.g. patients) as many whole
    clusters as there are, with replacement (the resampling of :func:`bootstrap_cis`). Weights
    for statistics that are sums over rows, such as curves: no resample is materialised."""
    rng = np.random.default_rng(seed)
    which = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    g = int(which.max()) + 1 if n else 0
    drawn = rng.integers(0, g, (n_boot, g))
    per_cluster = np.bincount((drawn + g * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * g)
    return per_cluster.reshape(n_boot, g)[:, which]


def curve_bands(positive: np.ndarray, score: np.ndarray, counts: np.ndarray, grid: np.ndarray,
                level: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pointwise bootstrap bands of the ROC curve (the true positive rate at each false positive
    rate of ``grid``) and of the precision-recall curve (interpolated precision: the best at any
    recall >= each of ``grid``) of ``score`` for (N,) bool ``positive``, over the resamples of
    ``counts`` ((B, N) from :func:`bootstrap_counts`) that hold both classes. Returns
    ``{"roc": (low, high), "pr": (low, high)}``, each (G,); NaN when no resample holds both."""
    order = np.argsort(-np.asarray(score), kind="stable")
    s, pos = np.asarray(score)[order], np.asarray(positive, bool)[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    w = counts[:, order].astype(np.float64)
    tp, fp = np.cumsum(w * pos, axis=1)[:, last], np.cumsum(w * ~pos, axis=1)[:, last]  # (B, T)
    both = (tp[:, -1] > 0) & (fp[:, -1] > 0)
    tp, fp = tp[both], fp[both]
    a = (1 - level) / 2
    if not len(tp):
        nan = np.full(len(grid), np.nan)
        return {"roc": (nan, nan), "pr": (nan, nan)}
    recall, fpr = tp / tp[:, -1:], fp / fp[:, -1:]
    called = tp + fp
    precision = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
    best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # best precision from each point on
    roc, pr = [], []
    for r in range(len(tp)):
        roc.append(np.interp(grid, np.r_[0.0, fpr[r]], np.r_[0.0, recall[r]]))
        at = np.searchsorted(recall[r], grid, side="left")  # the first point with recall >= each grid value
        pr.append(np.where(at < recall.shape[1], best_after[r, np.minimum(at, recall.shape[1] - 1)], 0.0))
    return {name: tuple(np.quantile(np.array(c), [a, 1 - a], axis=0)) for name, c in (("roc", roc), ("pr", pr))}


def bootstrap_cis(y: np.ndarray, prob: np.ndarray, score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
                  n_boot: int = 1000, level: float = 0.95, seed: int = 0, groups: np.ndarray | None = None,
                  method: str = "percentile", floor: float | None = None) -> dict[str, tuple[float, float]]:
    """Bootstrap CIs of each metric of ``score(y, prob)`` over resampled test rows, or with
    ``groups`` ((N,) cluster ids, e.g. patients) a cluster bootstrap: each resample draws as
    many clusters as there are, with replacement, and takes all their rows. Rows of one patient
    are not independent, so only the cluster bootstrap gives honest intervals.

    ``method``: ``percentile`` (the quantiles of the resampled values) or ``basic`` (those
    quantiles reflected about the estimate: [2t - q_hi, 2t - q_lo], Davison & Hinkley 1997),
    which corrects a plug-in estimate's bias to first order. Binned calibration errors need it:
    the plug-in ECE overestimates (sampling noise in a bin adds to |observed - confidence|, never
    cancels), a resample's ECE overestimates the sample's again, and the percentile interval sits
    above the truth (Kumar et al. 2019). ``floor`` clips the intervals below (0 for an error).
    Resamples where a metric is undefined (NaN: a class missing) are left out of its interval;
    a metric undefined in every resample (or, for ``basic``, on the whole set) gets (NaN, NaN).
    scikit-learn's warnings about such resamples are expected here and not shown."""
    if method not in ("percentile", "basic"):
        raise ValueError(f"unknown bootstrap method {method!r}: percentile or basic")
    import warnings

    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    a = (1 - level) / 2
    clusters = None
    if groups is not None:
        _, which = np.unique(np.asarray(groups), return_inverse=True)
        order = np.argsort(which, kind="stable")
        clusters = np.split(order, np.cumsum(np.bincount(which))[:-1])  # the rows of each cluster
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            if clusters is None:
                idx = rng.integers(0, len(y), len(y))
            else:
                idx = np.concatenate([clusters[c] for c in rng.integers(0, len(clusters), len(clusters))])
            for k, v in score(y[idx], prob[idx]).items():
                draws.setdefault(k, []).append(v)
        cis = {k: np.nanquantile(v, [a, 1 - a]) for k, v in draws.items()}
        if method == "basic":
            estimate = score(y, prob)
            cis = {k: 2 * estimate[k] - q[::-1] for k, q in cis.items()}
    return {k: tuple(float(v) for v in (q if floor is None else np.maximum(q, floor))) for k, q in cis.items()}


def _confidence(y: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, hit) pairs for calibration: two classes, P(class 1) against being class 1;
    more, the top label's probability against being right."""
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim == 2 and prob.shape[1] == 2:
        prob = prob[:, 1]
    if prob.ndim == 1:
        return prob, (y == 1).astype(np.float64)
    return prob.max(axis=1), (prob.argmax(axis=1) == y).astype(np.float64)


def _bins(conf: np.ndarray, hit: np.ndarray, n_bins: int, strategy: str = "width",
          counts: np.ndarray | None = None, level: float = 0.95) -> list[dict[str, float]]:
    """Non-empty bins of ``conf``: equal-width on [0, 1] (left-closed, the last also takes 1, as
    torchmetrics' ``CalibrationError``) or equal-mass (the sorted confidences cut into ``n_bins``
    runs of nearly equal size; ``lo``/``hi`` their smallest and largest confidence). With
    bootstrap ``counts`` (B, N), each bin's observed rate gets its ``level`` interval over the
    resamples that hold a case of the bin (``observed_low``, ``observed_high``), widened to at
    least the Wilson score interval of the bin's cases: where every case of a bin has the same
    outcome, so has every resample, and the bootstrap alone would give a zero-width interval."""
    if strategy == "mass":
        order = np.argsort(conf, kind="stable")
        groups = [(g, float(conf[g[0]]), float(conf[g[-1]])) for g in np.array_split(order, n_bins) if len(g)]
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
        groups = [(np.flatnonzero(which == b), float(edges[b]), float(edges[b + 1])) for b in range(n_bins)]
    groups = [(g, lo, hi) for g, lo, hi in groups if len(g)]
    out = [{"lo": lo, "hi": hi, "n": len(g), "confidence": float(conf[g].mean()), "observed": float(hit[g].mean())}
           for g, lo, hi in groups]
    if counts is not None:
        a = (1 - level) / 2
        for b, (g, _, _) in zip(out, groups, strict=True):
            w = counts[:, g]
            held = w.sum(axis=1) > 0
            lo, hi = np.quantile((w[held] @ hit[g]) / w[held].sum(axis=1), [a, 1 - a])
            w_lo, w_hi = _wilson(b["observed"], len(g), level)
            b["observed_low"], b["observed_high"] = float(min(lo, w_lo)), float(max(hi, w_hi))
    return out


def _wilson(rate: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``rate`` observed in ``n`` cases."""
    from statistics import NormalDist

    z2 = NormalDist().inv_cdf(1 - (1 - level) / 2) ** 2
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = np.sqrt(z2) / (1 + z2 / n) * np.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n))
    return centre - half, centre + half


def calibration_bins(y: np.ndarray, prob: np.ndarray, n_bins: int = 10, strategy: str = "width",
                     counts: np.ndarray | None = None) -> tuple[list[dict[str, float]], float]:
    """Reliability-diagram bins and the expected calibration error (ECE, L1).

    ``prob``: (N, K) class probabilities with ``y`` (N,) labels, or (N,) probabilities of class 1
    with 0/1 labels. Two classes: the calibration of P(class 1) against the observed rate of class
    1; more: top-label calibration (the predicted class's probability against accuracy), as in
    Guo et al. 2017. ``strategy``: ``width`` (equal-width bins on [0, 1]) or ``mass``
    (equal-count bins). Returns one dict per non-empty bin (``lo, hi, n, confidence,
    observed``; with bootstrap ``counts`` (B, N) from :func:`bootstrap_counts`, the 95% interval
    of ``observed`` too: ``observed_low``, ``observed_high``) and ECE = sum over bins of n/N *
    |observed - confidence|.
    """
    conf, hit = _confidence(y, prob)
    bins = _bins(conf, hit, n_bins, strategy, counts)
    return bins, float(sum(b["n"] / len(conf) * abs(b["observed"] - b["confidence"]) for b in bins))


def calibration_scores(y: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """How well (N, K) probabilities ``prob`` are calibrated for labels ``y`` (N,):

    - ``ece``: expected calibration error, equal-width bins (see :func:`calibration_bins`);
    - ``ece_mass``: the same over equal-mass bins (less sensitive to empty extreme bins);
    - ``classwise_ece``: the mean over classes of the ECE of P(class k) against being class k
      (Kull et al. 2019); for two classes it equals ``ece``;
    - ``mce``: the largest gap |observed - confidence| of a non-empty equal-width bin;
    - ``brier``: two classes, the mean of (P(class 1) - [y = 1])^2; more, the mean over samples
      of the sum over classes of (p_k - [y = k])^2;
    - ``nll``: the mean negative log-likelihood of the true class (probabilities floored at 1e-12).
    """
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, dtype=np.float64)
    k = prob.shape[1]
    conf, hit = _confidence(y, prob)
    width = _bins(conf, hit, n_bins)
    ece = float(sum(b["n"] / len(y) * abs(b["observed"] - b["confidence"]) for b in width))
    onehot = np.eye(k)[y]
    classwise = [calibration_bins((y == c).astype(int), prob[:, c], n_bins)[1] for c in range(k)]
    brier = np.mean((prob[:, 1] - onehot[:, 1]) ** 2) if k == 2 else np.mean(((prob - onehot) ** 2).sum(axis=1))
    return {"ece": ece, "ece_mass": calibration_bins(y, prob, n_bins, "mass")[1],
            "classwise_ece": float(np.mean(classwise)),
            "mce": float(max(abs(b["observed"] - b["confidence"]) for b in width)), "brier": float(brier),
            "nll": float(-np.mean(np.log(np.clip(prob[np.arange(len(y)), y], 1e-12, None))))}


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


# ----------------------------------------------------------------------------- segmentation


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
