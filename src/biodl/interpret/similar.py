"""Similar cases: the training images nearest to a case in the model's penultimate-feature space
(cosine similarity), with their labels ("which known cases does this look like?"), and a 2-D
map of the test set's features (t-SNE) coloured by true class, wrong predictions marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn


__all__ = ["head_inputs", "nearest", "feature_map"]


def head_inputs(model: nn.Module, x: Tensor, batch: int = 256) -> Tensor:
    """(N, D) features: what the model's last linear layer receives for pixels ``x`` (N, C, H, W)."""
    from ..report.tensorboard import last_linear

    head = last_linear(model)
    if head is None:
        raise ValueError("the model has no linear head to take features from")
    captured: list[Tensor] = []
    handle = head.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach().float().cpu()))
    try:
        with torch.no_grad():
            for part in x.split(batch):
                model(part.to(next(model.parameters()).device))
    finally:
        handle.remove()
    return torch.cat(captured).flatten(1)


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
