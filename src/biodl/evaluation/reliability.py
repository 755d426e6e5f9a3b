"""Calibration of predicted probabilities: reliability bins (equal width or equal mass, with
bootstrap or Wilson intervals per bin), ECE, MCE, classwise ECE, Brier score and NLL.
"""

from __future__ import annotations

import numpy as np

__all__ = ["calibration_bins", "calibration_scores"]


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
