"""Uncertainty of classifier predictions and referral to a human.

For an ensemble (or MC-dropout samples) of M probability vectors per case, (M, N, K):

- predictive entropy H(mean p): all the doubt about the case;
- expected entropy mean H(p_m): the doubt every member shares (noise in the case itself);
- mutual information, their difference: how much the members disagree (doubt that more
  training data could remove). Zero when all members agree exactly.

Referral: the cases a model is least sure of are sent to a human; the curve shows the accuracy
(and AUC) of the cases it keeps against the fraction referred, and the area under the
risk-coverage curve (AURC; lower is better) sums it up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["entropy", "decompose", "referral_curve", "aurc", "referral_metrics"]


_FLOOR = 1e-12


def entropy(prob: np.ndarray) -> np.ndarray:
    """(..., K) probabilities -> (...) entropy in nats (0 log 0 = 0)."""
    p = np.asarray(prob, dtype=np.float64)
    return -(p * np.log(np.clip(p, _FLOOR, None))).sum(axis=-1)


def decompose(probs: np.ndarray) -> dict[str, np.ndarray]:
    """(M, N, K) member probabilities -> per case (N,): ``entropy`` (predictive),
    ``expected_entropy`` and ``mutual_information`` (their difference, floored at 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    total = entropy(probs.mean(axis=0))
    expected = entropy(probs).mean(axis=0)
    return {"entropy": total, "expected_entropy": expected, "mutual_information": np.maximum(total - expected, 0.0)}


def _retained_scores(y: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    from ..evaluation import multiclass_scores

    if len(y) == 0:
        return float("nan"), float("nan")
    s = multiclass_scores(y, prob)
    return s["accuracy"], s["roc_auc"]


def referral_curve(y: np.ndarray, prob: np.ndarray, uncertainty: np.ndarray,
                   fractions: np.ndarray | None = None, counts: np.ndarray | None = None,
                   level: float = 0.95) -> pd.DataFrame:
    """Accuracy and ROC AUC of the cases kept when the ``fraction`` most uncertain are referred
    (ties broken by case order), for each fraction (default 0, 0.05, ..., 0.5). With bootstrap
    ``counts`` ((B, N), :func:`biodl.evaluation.bootstrap_counts`), the kept accuracy's ``level``
    interval too (``accuracy_low``, ``accuracy_high``): each resample refers its own most
    uncertain fraction, a case drawn k times counting as k cases."""
    y = np.asarray(y).astype(np.int64)
    order = np.argsort(-np.asarray(uncertainty), kind="stable")  # most uncertain first
    fractions = np.round(np.arange(0, 0.501, 0.05) if fractions is None else fractions, 6)
    rows = []
    for f in fractions:
        keep = np.sort(order[int(round(f * len(y))):])
        acc, auc = _retained_scores(y[keep], prob[keep])
        rows.append({"referred": float(f), "kept": int(len(keep)), "accuracy": acc, "roc_auc": auc})
    table = pd.DataFrame(rows)
    if counts is not None:
        kept = _kept_accuracy((np.asarray(prob).argmax(axis=1) == y)[order], counts[:, order], fractions)
        a = (1 - level) / 2
        table["accuracy_low"], table["accuracy_high"] = np.nanquantile(kept, [a, 1 - a], axis=0)
    return table


def _kept_accuracy(correct: np.ndarray, w: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """(B, F) accuracy of the cases kept by each of B resamples (``w``: (B, N) how often each case,
    most uncertain first, is drawn) after referring round(f x its size) of its cases, for each f."""
    cw = np.cumsum(w, axis=1)  # cases referred once this case (and its copies) is
    cc = np.cumsum(w * correct, axis=1)
    total, right = cw[:, -1], cc[:, -1]
    out = np.full((len(w), len(fractions)), np.nan)
    rows = np.arange(len(w))
    for i, f in enumerate(fractions):
        m = np.round(f * total)  # cases referred; the cut may fall among the copies of one case
        j = np.minimum((cw < m[:, None]).sum(axis=1), w.shape[1] - 1)  # the case at the cut
        before_w = np.where(j > 0, cw[rows, j - 1], 0)
        before_c = np.where(j > 0, cc[rows, j - 1], 0)
        referred_right = before_c + (m - before_w) * correct[j]
        left = total - m
        out[:, i] = np.divide(right - referred_right, left, out=np.full(len(w), np.nan), where=left > 0)
    return out


def aurc(y: np.ndarray, prob: np.ndarray, uncertainty: np.ndarray) -> float:
    """Area under the risk-coverage curve: the mean, over coverages 1/N, 2/N, ..., 1, of the error
    rate of the most certain cases kept (lower is better; a perfect ranking of the errors gives
    the least possible for the model's accuracy)."""
    y = np.asarray(y).astype(np.int64)
    wrong = (np.asarray(prob).argmax(axis=1) != y)[np.argsort(np.asarray(uncertainty), kind="stable")]
    return float(np.mean(np.cumsum(wrong) / np.arange(1, len(y) + 1)))


def referral_metrics(y: np.ndarray, prob: np.ndarray, uncertainty: np.ndarray, prefix: str,
                     name: str = "entropy") -> dict[str, float]:
    """``<prefix>/aurc_<name>`` and the accuracy kept after referring 10 % and 20 %
    (``<prefix>/accuracy_refer10_<name>``...)."""
    curve = referral_curve(y, prob, uncertainty, np.array([0.1, 0.2]))
    return {f"{prefix}/aurc_{name}": aurc(y, prob, uncertainty),
            f"{prefix}/accuracy_refer10_{name}": float(curve["accuracy"].iloc[0]),
            f"{prefix}/accuracy_refer20_{name}": float(curve["accuracy"].iloc[1])}
