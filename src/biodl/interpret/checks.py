"""Does a saliency map mean anything? Two checks.

- Sanity check (Adebayo et al. 2018, cascading model-parameter randomisation): re-initialise
  the network's layers from the output down, recompute the map each time, and compare it with
  the original (Spearman rank correlation of |map|, SSIM of the |map| scaled to [0, 1]). A
  method whose maps survive the randomisation of the whole network explains the image, not the
  model, and is flagged.
- Faithfulness (Petsiuk et al. 2018): delete the most important pixels first (to black) and
  watch the target probability fall; insert them first into a blurred copy and watch it rise.
  Smaller deletion area and larger insertion area are better.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["FLAG_SPEARMAN", "sanity_check", "deletion_insertion"]


#: flagged when the map of the fully randomised network keeps at least this rank correlation
FLAG_SPEARMAN = 0.5

MapFn = Callable[[nn.Module, Tensor, int], Tensor]


def _stages(model: nn.Module, n: int) -> list[tuple[str, list[nn.Module]]]:
    """The modules that hold parameters, in definition order, cut into ``n`` contiguous groups
    (named by their first module); returned output side first."""
    leaves = [(name, m) for name, m in model.named_modules()
              if any(True for _ in m.parameters(recurse=False)) and hasattr(m, "reset_parameters")]
    n = min(n, len(leaves))
    cuts = np.linspace(0, len(leaves), n + 1).round().astype(int)
    groups = [(leaves[a][0], [m for _, m in leaves[a:b]]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    return groups[::-1]


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    def unit(m: np.ndarray) -> np.ndarray:
        m = np.abs(m)
        return m / m.max() if m.max() > 0 else m

    side = min(a.shape)
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(unit(a), unit(b), data_range=1.0, win_size=win))


def sanity_check(explain: MapFn, model: nn.Module, x: Tensor, target: int, stages: int = 5,
                 seed: int = 0) -> dict[str, Any]:
    """Cascading randomisation: ``explain(model, x, target)`` -> (H, W) map on the trained model,
    then after re-initialising the top 1, 2, ... ``stages`` groups of layers. Returns per step
    the layers randomised so far, Spearman rank correlation of |map| and SSIM, and ``flagged``
    (the map of the fully randomised network still correlates >= FLAG_SPEARMAN)."""
    from scipy.stats import spearmanr

    original = explain(model, x, target).numpy()
    rand = copy.deepcopy(model)
    torch.manual_seed(seed)
    steps = []
    for name, modules in _stages(rand, stages):
        for m in modules:
            m.reset_parameters()
        amap = explain(rand, x, target).numpy()
        a, b = np.abs(original).ravel(), np.abs(amap).ravel()
        rho = spearmanr(a, b).statistic if a.std() > 0 and b.std() > 0 else 0.0  # a flat map: nothing kept
        steps.append({"randomised_from": name, "spearman": float(rho),
                      "ssim": _ssim(original, amap)})
    final = steps[-1]["spearman"] if steps else 1.0
    return {"steps": steps, "flagged": bool(final >= FLAG_SPEARMAN), "threshold": FLAG_SPEARMAN}


@torch.no_grad()
def deletion_insertion(model: nn.Module, x: Tensor, target: int, amap: Tensor, steps: int = 20,
                       batch: int = 32, delete_to: Tensor | None = None,
                       insert_into: Tensor | None = None) -> dict[str, Any]:
    """Target probability as the top-ranked positions of ``amap`` (``x``'s spatial shape: (H, W)
    for an image (1, C, H, W), (L,) for a sequence (1, 4, L)) are deleted (set to ``delete_to``,
    default black) or inserted (into ``insert_into``, default a blurred copy of ``x``), at
    ``steps`` + 1 fractions from 0 to 1; with the areas under both curves (trapezoid rule)."""
    from .attributions import baseline_image

    n = amap.numel()
    order = torch.argsort(amap.flatten(), descending=True, stable=True)
    fractions = np.linspace(0, 1, steps + 1)
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    masks = torch.stack([(rank < round(f * n)).view(1, *amap.shape) for f in fractions]).to(x)  # (S, 1, *spatial)
    gone = torch.zeros_like(x) if delete_to is None else delete_to.to(x)
    background = baseline_image("blurred", x) if insert_into is None else insert_into.to(x)
    deleted = x * (1 - masks) + gone * masks
    inserted = background * (1 - masks) + x * masks
    model.eval()
    probs = torch.cat([torch.softmax(model(chunk).float(), dim=1)[:, target]
                       for chunk in torch.cat([deleted, inserted]).split(batch)]).cpu().numpy()
    d, i = probs[: len(fractions)], probs[len(fractions):]
    area = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    return {"fractions": fractions.tolist(), "deletion": d.tolist(), "insertion": i.tolist(),
            "deletion_auc": float(area(d, fractions)), "insertion_auc": float(area(i, fractions))}
