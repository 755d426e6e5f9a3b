"""Bags of tiles for multiple-instance learning (#32): which tiles of a slide (or a patient's
mosaic) form each bag, and the bag's label from its tiles'.

``window_bags`` cuts a slide's tile grid into k x k-tile windows (Ilse et al. 2018's protocol on
real tissue: a region is positive when it holds at least one positive tile). ``pad_bags`` stacks
bags of different sizes into one (B, N, D) batch with a (B, N) mask of real tiles, the input of
:class:`biodl.models.mil.AttentionMIL`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError

__all__ = ["window_bags", "bag_labels", "pad_bags", "BagSet"]


def window_bags(xy: np.ndarray, tile: int, k: int, min_tiles: int = 1) -> np.ndarray:
    """(N,) the bag of each tile (-1: its window holds fewer than ``min_tiles`` tiles): windows of
    k x k tiles of side ``tile`` (level-0 pixels), aligned at the slide's top-left tile, numbered
    row by row from 0. ``xy``: (N, 2) top-left (x, y) of each tile."""
    if k < 1 or tile < 1:
        raise ValueError("k and tile must be >= 1")
    xy = np.asarray(xy, dtype=np.int64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
        raise DataError("tiles", f"positions must be (N, 2) with N >= 1, got {xy.shape}")
    cell = (xy - xy.min(axis=0)) // (tile * k)  # (N, 2) window column and row
    _, bag, counts = np.unique(cell[:, 1] * (int(cell[:, 0].max()) + 1) + cell[:, 0], return_inverse=True,
                               return_counts=True)
    bag = bag.ravel()
    keep = counts[bag] >= min_tiles
    renumber = np.cumsum(counts >= min_tiles) - 1
    return np.where(keep, renumber[bag], -1)


def bag_labels(bags: np.ndarray, tile_labels: np.ndarray) -> np.ndarray:
    """(B,) 1 for a bag holding at least one positive tile, else 0 (``bags`` from :func:`window_bags`)."""
    bags, y = np.asarray(bags), np.asarray(tile_labels)
    n = int(bags.max()) + 1 if (bags >= 0).any() else 0
    out = np.zeros(n, dtype=np.int64)
    np.maximum.at(out, bags[bags >= 0], (y[bags >= 0] > 0).astype(np.int64))
    return out


def pad_bags(bags: list[torch.Tensor], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bags (each (N_i, D)) -> ((B, max N_i, D) padded with ``fill``, (B, max N_i) bool mask of
    real tiles). ``fill=nan`` makes the mask implicit: the MIL models read NaN rows as padding."""
    if not bags or any(b.ndim != 2 or len(b) == 0 for b in bags):
        raise ValueError("every bag needs at least one tile of D features")
    n, d = max(len(b) for b in bags), bags[0].shape[1]
    x = bags[0].new_full((len(bags), n, d), fill)
    mask = torch.zeros(len(bags), n, dtype=torch.bool, device=bags[0].device)
    for i, b in enumerate(bags):
        x[i, : len(b)] = b
        mask[i, : len(b)] = True
    return x, mask


class BagSet(torch.utils.data.Dataset):
    """Bags of tile features for the engine: ``dataset[indices]`` is one batch, ((B, N, D) with
    NaN padding rows, (B,) labels). With ``max_tiles``, a larger bag is a random subset of its
    tiles each time it is drawn (torch's generator, so seeded runs repeat): training only."""

    batch_indexable = True

    def __init__(self, bags: list[torch.Tensor], labels: np.ndarray, max_tiles: int | None = None) -> None:
        if len(bags) != len(labels):
            raise ValueError(f"{len(bags)} bags but {len(labels)} labels")
        self.bags, self.labels, self.max_tiles = bags, torch.as_tensor(np.asarray(labels), dtype=torch.long), max_tiles

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, index):
        single = isinstance(index, int)
        idx = torch.as_tensor(index).reshape(-1)
        chosen = []
        for i in idx.tolist():
            bag = self.bags[i]
            if self.max_tiles is not None and len(bag) > self.max_tiles:
                bag = bag[torch.randperm(len(bag))[: self.max_tiles].sort().values]
            chosen.append(bag)
        x, _ = pad_bags(chosen, fill=float("nan"))
        return (x[0], self.labels[idx][0]) if single else (x, self.labels[idx])
