"""The bootstrap: percentile (or basic) CIs of any score, resampling rows or whole patients
(a cluster bootstrap), and draw counts that weight curves without materialising resamples.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["bootstrap_counts", "curve_bands", "bootstrap_cis"]


def _resampleable(groups: np.ndarray | None) -> np.ndarray | None:
    """``groups``, or None (rows are resampled) when they are a single cluster: one cannot be
    resampled, and its rows' intervals leave out the variation between clusters (a warning says so)."""
    if groups is None or len(groups) == 0 or len(np.unique(np.asarray(groups))) > 1:
        return groups
    import warnings

    warnings.warn("every test case is of one group (patient, plate): the CIs resample its rows and leave out "
                  "the variation between groups", stacklevel=3)
    return None


def bootstrap_counts(n: int, n_boot: int = 200, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """(n_boot, n) how many times each of n rows is drawn in each bootstrap resample: n rows
    with replacement, or with ``groups`` ((n,) cluster ids, e.g. patients) as many whole
    clusters as there are, with replacement (the resampling of :func:`bootstrap_cis`). Weights
    for statistics that are sums over rows, such as curves: no resample is materialised."""
    rng = np.random.default_rng(seed)
    groups = _resampleable(groups)
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
    groups = _resampleable(groups)
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
