"""Recalibration of a classifier's probabilities, fitted on the validation split only.

A map from (N, K) probabilities to recalibrated (N, K) probabilities, stored as JSON (a run's
``calibration.json``, read and written by ``biodl.runs``). All methods work from the
log-probabilities ``z = log p`` (for a softmax model these are the logits up to a per-sample
constant, which softmax ignores, so scaling them is scaling the logits; the same holds for
ensembles and test-time averages):

- ``temperature`` (Guo et al. 2017): ``softmax(z / T)``, one parameter; keeps every argmax;
- ``vector``: ``softmax(w * z + b)``, a scale and a bias per class;
- ``platt`` (two classes): ``P(1) = sigmoid(a * (z1 - z0) + b)``;
- ``isotonic`` (two classes): a non-decreasing step-wise linear map of P(1) (scikit-learn's
  ``IsotonicRegression``, its thresholds stored and applied with linear interpolation).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

__all__ = [
    "METHODS", "BINARY_ONLY", "Recalibration", "fit", "apply_per_fold", "SCORES", "WITH_CIS",
    "ece_brier_nll", "calibration_metrics",
]


METHODS = ("temperature", "vector", "platt", "isotonic")
BINARY_ONLY = ("platt", "isotonic")
_FLOOR = 1e-12


class Recalibration(BaseModel):
    """A fitted recalibration: the method, its parameters, and what it was fitted on."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: Literal["temperature", "vector", "platt", "isotonic"]
    classes: int = Field(ge=2)
    temperature: float | None = Field(None, gt=0)
    scale: list[float] | None = None
    bias: list[float] | None = None
    a: float | None = None
    b: float | None = None
    x: list[float] | None = None
    y: list[float] | None = None
    fitted_on: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _parameters(self) -> "Recalibration":
        need = {"temperature": ("temperature",), "vector": ("scale", "bias"), "platt": ("a", "b"),
                "isotonic": ("x", "y")}[self.method]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{self.method} needs {', '.join(missing)}")
        if self.method == "vector" and not len(self.scale or []) == len(self.bias or []) == self.classes:
            raise ValueError(f"vector scaling needs one scale and one bias per class ({self.classes})")
        if self.method == "isotonic" and (len(self.x or []) != len(self.y or []) or not self.x):
            raise ValueError("isotonic needs as many y as x thresholds (one or more)")
        if self.method in BINARY_ONLY and self.classes != 2:
            raise ValueError(f"{self.method} is for two classes")
        return self

    def apply(self, prob: np.ndarray) -> np.ndarray:
        """(N, K) probabilities -> (N, K) recalibrated probabilities."""
        prob = np.asarray(prob, dtype=np.float64)
        if prob.ndim != 2 or prob.shape[1] != self.classes:
            raise ValueError(f"expected (N, {self.classes}) probabilities, got {prob.shape}")
        z = np.log(np.clip(prob, _FLOOR, None))
        if self.method == "temperature":
            return _softmax(z / self.temperature)
        if self.method == "vector":
            return _softmax(z * np.asarray(self.scale) + np.asarray(self.bias))
        if self.method == "platt":
            p1 = _sigmoid(self.a * (z[:, 1] - z[:, 0]) + self.b)
        else:
            p1 = np.interp(prob[:, 1], self.x, self.y)
        return np.column_stack([1 - p1, p1])


    def log_prob(self, logp: "torch.Tensor") -> "torch.Tensor":
        """The same map in torch, on (B, K) log-probabilities, giving the log of the recalibrated
        probabilities (for a model that carries its recalibration, e.g. each fold model of a
        k-fold run inside their mean)."""
        import torch
        import torch.nn.functional as F

        if self.method == "temperature":
            return torch.log_softmax(logp / self.temperature, dim=1)
        if self.method == "vector":
            w, b = (torch.tensor(v, dtype=logp.dtype, device=logp.device) for v in (self.scale, self.bias))
            return torch.log_softmax(logp * w + b, dim=1)
        if self.method == "platt":
            t = self.a * (logp[:, 1] - logp[:, 0]) + self.b
            return torch.stack([F.logsigmoid(-t), F.logsigmoid(t)], dim=1)
        x, y = (torch.tensor(v, dtype=logp.dtype, device=logp.device) for v in (self.x, self.y))
        if len(x) == 1:  # a constant map
            p1 = y.expand(len(logp))
        else:  # np.interp: linear between thresholds, the end values outside them
            p = logp[:, 1].exp().clamp(float(x[0]), float(x[-1]))
            hi = torch.searchsorted(x, p, right=True).clamp(1, len(x) - 1)
            x0, x1, y0, y1 = x[hi - 1], x[hi], y[hi - 1], y[hi]
            t = torch.where(x1 > x0, (p - x0) / torch.where(x1 > x0, x1 - x0, torch.ones_like(x0)), 0.0)
            p1 = y0 + t * (y1 - y0)
        p1 = p1.clamp(_FLOOR, 1 - _FLOOR)
        return torch.stack([torch.log1p(-p1), p1.log()], dim=1)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * t))  # no overflow for large |t|


def _nll(prob: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(prob[np.arange(len(y)), y], _FLOOR, None))))


def fit(method: str, y: np.ndarray, prob: np.ndarray, where: str | Path = "calibration") -> Recalibration:
    """Fit ``method`` on validation labels ``y`` (N,) and probabilities ``prob`` (N, K) by
    minimising the negative log-likelihood (isotonic: the squared error, as scikit-learn)."""
    from scipy.optimize import minimize, minimize_scalar

    if method not in METHODS:
        raise ConfigError("--method", f"unknown recalibration {method!r}; known: {', '.join(METHODS)}")
    y = np.asarray(y).astype(np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    k = prob.shape[1]
    if method in BINARY_ONLY and k != 2:
        raise ConfigError("--method", f"{method} recalibrates two-class runs; this one has {k} classes (use "
                                      "temperature or vector)")
    if len(y) == 0:
        raise DataError(where, "the validation split is empty: nothing to fit the recalibration on")
    if len(np.unique(y)) < 2:
        raise DataError(where, "the validation split holds one class only: a recalibration fitted on it would "
                               "say every case is that class")
    z = np.log(np.clip(prob, _FLOOR, None))
    onehot = np.eye(k)[y]
    params: dict[str, Any]
    if method == "temperature":
        res = minimize_scalar(lambda t: _nll(_softmax(z / np.exp(t)), y), bounds=(-4.0, 4.0), method="bounded",
                              options={"xatol": 1e-6})
        params = {"temperature": float(np.exp(res.x))}
    elif method == "vector":
        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:k], theta[k:]
            q = _softmax(z * w + b)
            d = (q - onehot) / len(y)
            return _nll(q, y), np.concatenate([(d * z).sum(axis=0), d.sum(axis=0)])

        res = minimize(loss, np.r_[np.ones(k), np.zeros(k)], jac=True, method="L-BFGS-B")
        params = {"scale": res.x[:k].tolist(), "bias": res.x[k:].tolist()}
    elif method == "platt":
        s = z[:, 1] - z[:, 0]

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            p1 = np.clip(_sigmoid(theta[0] * s + theta[1]), _FLOOR, 1 - _FLOOR)
            d = (p1 - y) / len(y)
            return float(-np.mean(y * np.log(p1) + (1 - y) * np.log(1 - p1))), np.array([(d * s).sum(), d.sum()])

        res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        params = {"a": float(res.x[0]), "b": float(res.x[1])}
    else:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(prob[:, 1], y)
        params = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    cal = Recalibration(method=method, classes=k, **params)
    cal.fitted_on = {"split": "val", "n": int(len(y)), "nll_before": _nll(prob, y),
                     "nll_after": _nll(np.clip(cal.apply(prob), _FLOOR, 1), y)}
    return cal


def apply_per_fold(prob: np.ndarray, fold: np.ndarray, maps: list[Recalibration]) -> np.ndarray:
    """(N, K) pooled out-of-fold probabilities, each row recalibrated by its own fold's map
    (``fold``: (N,) 1-based fold of each row; ``maps``: one per fold, each fitted on that fold's
    validation patients)."""
    after = np.empty_like(np.asarray(prob, dtype=np.float64))
    for k, cal in enumerate(maps):
        rows = np.asarray(fold) == k + 1
        after[rows] = cal.apply(prob[rows])
    return after


#: the calibration metrics reported before and after recalibration (see metrics.calibration_scores)
SCORES = ("ece", "ece_mass", "classwise_ece", "mce", "brier", "nll")
#: those with bootstrap CIs (cheap enough per resample)
WITH_CIS = ("ece", "brier", "nll")


def ece_brier_nll(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """The :data:`WITH_CIS` scores of ``metrics.calibration_scores``, computed alone (the
    bootstrap's score: a few times faster than all six)."""
    from ..evaluation import calibration_bins

    k = prob.shape[1]
    onehot = np.eye(k)[y]
    brier = np.mean((prob[:, 1] - onehot[:, 1]) ** 2) if k == 2 else np.mean(((prob - onehot) ** 2).sum(axis=1))
    return {"ece": calibration_bins(y, prob)[1], "brier": float(brier),
            "nll": float(-np.mean(np.log(np.clip(prob[np.arange(len(y)), y], _FLOOR, None))))}


def calibration_metrics(y: np.ndarray, prob: np.ndarray, after: np.ndarray | None, prefix: str, n_boot: int,
                        groups: np.ndarray | None = None) -> dict[str, float]:
    """``<prefix>/<score>`` of (N, K) probabilities ``prob`` for labels ``y`` and, given the
    recalibrated probabilities ``after`` (N, K), ``<prefix>/<score>_after``; 95% bootstrap CIs
    (``..._ci_low/high``) of ECE, Brier and NLL, resampling ``groups`` (patients) when given.
    The intervals are basic-bootstrap ones (see ``metrics.bootstrap_cis``): percentile intervals
    of the plug-in ECE lie above the true calibration error, often wholly."""
    from ..evaluation import bootstrap_cis, calibration_scores

    y = np.asarray(y).astype(np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    k = prob.shape[1]
    both = prob if after is None else np.hstack([prob, np.asarray(after, dtype=np.float64)])

    def score(yy: np.ndarray, pp: np.ndarray) -> dict[str, float]:
        out = ece_brier_nll(yy, pp[:, :k])
        if after is not None:
            out.update({f"{key}_after": v for key, v in ece_brier_nll(yy, pp[:, k:]).items()})
        return out

    metrics = {f"{prefix}/{key}": v for key, v in calibration_scores(y, prob).items()}
    if after is not None:
        metrics.update({f"{prefix}/{key}_after": v for key, v in calibration_scores(y, both[:, k:]).items()})
    for key, (lo, hi) in bootstrap_cis(y, both, score, n_boot, seed=0, groups=groups, method="basic",
                                       floor=0.0).items():
        metrics[f"{prefix}/{key}_ci_low"], metrics[f"{prefix}/{key}_ci_high"] = lo, hi
    return metrics
