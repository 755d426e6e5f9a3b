"""Cases of no class the model knows (an unseen cell type, a doublet): novelty scores and the
rule that leaves a case unassigned.

A score is larger for a case less like the training cases:

- ``max_probability``: 1 minus the largest class probability (Hendrycks & Gimpel 2017);
- ``knn``: the cosine distance to the k-th nearest training case in a feature space, e.g. the
  network's penultimate layer (Sun et al. 2022);
- ``mahalanobis``: the smallest Mahalanobis distance to a class mean, one covariance shared by
  the classes and shrunk towards a multiple of the identity (Ledoit & Wolf 2004), as Lee et al.
  2018 score a network's features.

A case is unassigned when its score exceeds a threshold set on validation cases of the known
classes: the ceil((n + 1)(1 - alpha))-th smallest of their n scores, the split-conformal
quantile, so a new case exchangeable with them is left unassigned with probability at most
alpha (a conformal outlier test, Bates et al. 2023). Cases from another batch (a plate, a site)
are not exchangeable with the validation ones, and more of them than alpha may be unassigned:
measure it on a held-out batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SCORES", "NoveltyScore", "threshold", "unassigned"]

SCORES = ("max_probability", "knn", "mahalanobis")


@dataclass
class NoveltyScore:
    """A novelty score (``kind`` of :data:`SCORES`) fitted on training features (N, D) and
    labels (N,); :meth:`score` takes (M, D) features and (M, K) probabilities (either may be
    None where the kind does not use it) -> (M,) scores."""

    kind: str = "knn"
    k: int = 5
    bank: np.ndarray | None = field(default=None, repr=False)
    means: np.ndarray | None = field(default=None, repr=False)
    precision: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SCORES:
            raise ValueError(f"unknown novelty score {self.kind!r}; known: {', '.join(SCORES)}")

    def fit(self, features: np.ndarray | None, labels: np.ndarray | None) -> "NoveltyScore":
        if self.kind == "max_probability":
            return self
        x = np.asarray(features, dtype=np.float64)
        if self.kind == "knn":
            self.bank = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            return self
        from sklearn.covariance import LedoitWolf

        y = np.asarray(labels)
        classes = np.unique(y)
        self.means = np.stack([x[y == c].mean(axis=0) for c in classes])
        centred = x - self.means[np.searchsorted(classes, y)]
        self.precision = LedoitWolf().fit(centred).precision_
        return self

    def score(self, features: np.ndarray | None, prob: np.ndarray | None = None) -> np.ndarray:
        if self.kind == "max_probability":
            return 1.0 - np.asarray(prob, dtype=np.float64).max(axis=1)
        x = np.asarray(features, dtype=np.float64)
        if self.kind == "knn":
            q = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            k = min(self.k, len(self.bank))
            distance = 1.0 - q @ self.bank.T
            return np.partition(distance, k - 1, axis=1)[:, k - 1]
        d = x[:, None, :] - self.means[None]  # (M, C, D)
        return np.sqrt(np.einsum("mcd,de,mce->mc", d, self.precision, d).min(axis=1))


def threshold(val_scores: np.ndarray, alpha: float) -> float:
    """The split-conformal threshold: the ceil((n + 1)(1 - alpha))-th smallest of the n
    validation scores (infinite, nothing unassigned, when n is too small for alpha)."""
    from .conformal import conformal_quantile

    cut = conformal_quantile(np.asarray(val_scores, dtype=np.float64), alpha)
    return math.inf if cut is None else cut


def unassigned(scores: np.ndarray, cut: float) -> np.ndarray:
    """(M,) True where a case's score is above the threshold ``cut``."""
    return np.asarray(scores) > cut
