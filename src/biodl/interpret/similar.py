"""Similar cases: the training images nearest to a case in the model's penultimate-feature space
(cosine similarity), with their labels ("which known cases does this look like?"), and a 2-D
map of the test set's features (t-SNE) coloured by true class, wrong predictions marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..report.tensorboard import head_inputs  # re-exported: the penultimate features


__all__ = ["head_inputs", "nearest", "feature_map"]


def nearest(query: Tensor, bank: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """Cosine similarity of each of ``query`` (Q, D) to its ``k`` nearest rows of ``bank`` (N, D):
    (similarities (Q, k), indices (Q, k)), most similar first."""
    q = torch.nn.functional.normalize(query.float(), dim=1)
    b = torch.nn.functional.normalize(bank.float(), dim=1)
    sim, idx = (q @ b.T).topk(min(k, len(b)), dim=1)
    return sim, idx


def feature_map(features: np.ndarray, y: np.ndarray, pred: np.ndarray, classes: list[str], path: str | Path,
                seed: int = 0) -> None:
    """A t-SNE map of (N, D) ``features``: one colour per true class, wrong predictions circled."""
    from sklearn.manifold import TSNE

    from ..report.figures import pyplot, save_figure

    n = len(features)
    xy = TSNE(n_components=2, perplexity=float(min(30, max(2, (n - 1) // 3))), init="pca", random_state=seed
              ).fit_transform(np.asarray(features, dtype=np.float64))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for c, name in enumerate(classes):
        sel = y == c
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=10, label=name)
    wrong = pred != y
    ax.scatter(xy[wrong, 0], xy[wrong, 1], s=40, facecolors="none", edgecolors="black", linewidths=0.7,
               label="predicted wrong")
    ax.set(title="Test images in the model's feature space (t-SNE)", xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=1.5)
    save_figure(fig, path)
