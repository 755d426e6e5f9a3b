"""Split-conformal prediction sets for classifiers (Vovk et al. 2005; Angelopoulos & Bates 2021).

Fitted on held-out labelled predictions (the validation split), a conformal predictor turns
any (N, K) probabilities into a set of classes per case that contains the true class with
probability at least 1 - alpha, for cases exchangeable with the calibration ones:

- ``lac`` (least ambiguous set-valued classifier, Sadinle et al. 2019): every class whose
  probability is at least 1 - q; the smallest sets on average, possibly empty (no class
  plausible enough: refer the case);
- ``aps`` (adaptive prediction sets, Romano et al. 2020): the most probable classes until their
  mass reaches q, randomised at the last class so coverage is exact rather than conservative;
- ``mondrian`` (class-conditional LAC, Vovk 2012): one threshold per true class, so that every
  class, rare ones too, is covered at 1 - alpha;
- ``ordinal`` (for grades; Lu et al. 2022): a contiguous run of grades grown from the most
  probable one towards the more probable neighbour until its mass reaches q, randomised like
  APS; a set never skips a grade.

The threshold is the ceil((n + 1)(1 - alpha))-th smallest calibration score (infinite, the
set of all classes, when n is too small for alpha). Randomisation draws come from a seeded
generator, so a set is the same on every rerun.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, DataError

__all__ = ["METHODS", "ConformalPredictor", "fit", "set_scores", "describe", "conformal_quantile"]


METHODS = ("lac", "aps", "mondrian", "ordinal")


class ConformalPredictor(BaseModel):
    """A fitted conformal predictor (JSON-able): the method, alpha and its threshold(s)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: Literal["lac", "aps", "mondrian", "ordinal"]
    alpha: float = Field(gt=0, lt=1)
    classes: int = Field(ge=2)
    threshold: list[float | None] = Field(min_length=1, description="q, or one q per class (mondrian); null: "
                                                                   "infinite (too few cases for alpha)")
    n: int = Field(ge=1, description="calibration cases")
    seed: int = 0
    on: Literal["raw", "recalibrated"] = Field("raw", description="the probabilities it takes")

    def sets(self, prob: np.ndarray, seed: int | None = None) -> np.ndarray:
        """(N, K) probabilities -> (N, K) bool membership of each class in each case's set (APS
        and ordinal draw their randomisation from ``seed``, by default ``self.seed + 1``: draws
        apart from the calibration cases')."""
        prob = np.asarray(prob, dtype=np.float64)
        q = np.asarray([np.inf if t is None else t for t in self.threshold], dtype=np.float64)
        if self.method == "lac":
            return 1 - prob <= q[0]
        if self.method == "mondrian":
            return 1 - prob <= q[None, :]
        u = np.random.default_rng(self.seed + 1 if seed is None else seed).random(len(prob))
        order = _order(prob, self.method)
        mass = np.take_along_axis(prob, order, axis=1)
        before = np.cumsum(mass, axis=1) - mass
        keep_sorted = before + u[:, None] * mass <= q[0]
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=1)
        return keep


def _order(prob: np.ndarray, method: str) -> np.ndarray:
    """(N, K) class order in which a case's set grows: by probability (aps), or outwards from the
    most probable grade, to the more probable neighbour first (ordinal)."""
    if method == "aps":
        return np.argsort(-prob, axis=1, kind="stable")
    n, k = prob.shape
    order = np.empty((n, k), dtype=np.int64)
    lo = hi = prob.argmax(axis=1)
    order[:, 0] = lo
    rows = np.arange(n)
    for j in range(1, k):
        left = np.where(lo > 0, prob[rows, np.maximum(lo - 1, 0)], -1.0)
        right = np.where(hi < k - 1, prob[rows, np.minimum(hi + 1, k - 1)], -1.0)
        go_left = left > right
        lo, hi = np.where(go_left, lo - 1, lo), np.where(go_left, hi, hi + 1)
        order[:, j] = np.where(go_left, lo, hi)
    return order


def _scores(y: np.ndarray, prob: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Each calibration case's non-conformity score (larger: the true class is less expected)."""
    if method in ("lac", "mondrian"):
        return 1 - prob[np.arange(len(y)), y]
    u = np.random.default_rng(seed).random(len(y))
    order = _order(prob, method)
    mass = np.take_along_axis(prob, order, axis=1)
    at = np.argmax(order == y[:, None], axis=1)  # where the true class comes in the growth order
    before = np.cumsum(mass, axis=1) - mass
    rows = np.arange(len(y))
    return before[rows, at] + u * mass[rows, at]


def conformal_quantile(scores: np.ndarray, alpha: float) -> float | None:
    """The ceil((n + 1)(1 - alpha))-th smallest score; None (infinite) when that exceeds n."""
    n = len(scores)
    k = math.ceil((n + 1) * (1 - alpha))
    return None if k > n else float(np.sort(scores)[k - 1])


def fit(method: str, y: np.ndarray, prob: np.ndarray, alpha: float = 0.1, seed: int = 0,
        where: str = "conformal") -> ConformalPredictor:
    """A conformal predictor from calibration labels ``y`` (N,) and probabilities (N, K)."""
    if method not in METHODS:
        raise ConfigError("--conformal", f"unknown conformal method {method!r}; known: {', '.join(METHODS)}")
    if not 0 < alpha < 1:
        raise ConfigError("alpha", f"the error rate alpha must lie strictly between 0 and 1 (got {alpha})")
    y = np.asarray(y).astype(np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    if len(y) == 0:
        raise DataError(where, "no calibration cases (the validation split is empty)")
    scores = _scores(y, prob, method, seed)
    if method == "mondrian":
        threshold = [conformal_quantile(scores[y == c], alpha) if np.any(y == c) else None
                     for c in range(prob.shape[1])]
    else:
        threshold = [conformal_quantile(scores, alpha)]
    return ConformalPredictor(method=method, alpha=alpha, classes=prob.shape[1], threshold=threshold, n=len(y),
                              seed=seed)


def set_scores(y: np.ndarray, member: np.ndarray) -> dict[str, float]:
    """Coverage (share of cases whose set holds the true class), mean set size, share of empty
    sets, and the coverage of each true class (``coverage_class<k>``)."""
    y = np.asarray(y).astype(np.int64)
    hit = member[np.arange(len(y)), y]
    out = {"coverage": float(hit.mean()), "set_size": float(member.sum(axis=1).mean()),
           "empty_sets": float((member.sum(axis=1) == 0).mean())}
    for c in range(member.shape[1]):
        if np.any(y == c):
            out[f"coverage_class{c}"] = float(hit[y == c].mean())
    return out


def describe(member: np.ndarray, classes: list[str]) -> list[str]:
    """Each case's set as text: ``{a, b}``, ``{}`` for an empty set."""
    return ["{" + ", ".join(classes[k] for k in np.flatnonzero(row)) + "}" for row in member]
