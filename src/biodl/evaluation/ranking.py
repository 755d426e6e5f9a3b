"""Aggregating feature rankings: the Borda count."""

from __future__ import annotations

import numpy as np
import pandas as pd


__all__ = ["ranks_from_scores", "borda_count"]


def ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """(R, F) importance scores -> (R, F) positions, 0 = most important (stable for ties)."""
    order = np.argsort(-np.asarray(scores, dtype=float), axis=1, kind="stable")
    positions = np.empty_like(order)
    rows = np.arange(order.shape[0])[:, None]
    positions[rows, order] = np.arange(order.shape[1])[None, :]
    return positions


def borda_count(positions: np.ndarray, features: list[str], top_k: int | None = None) -> pd.DataFrame:
    """Aggregate R rankings of F features by Borda count.

    ``positions``: (R, F) integer positions, 0 = best. A feature at position p earns
    F - p points (with ``top_k``: k - p points when p < k, else 0). Features are sorted
    by total points, ties broken by mean position (lower first), then by name.
    Returns columns feature, points, mean_position, rank (1 = best).
    """
    positions = np.asarray(positions)
    n_rank, n_feat = positions.shape
    if len(features) != n_feat:
        raise ValueError(f"{len(features)} names for {n_feat} features")
    k = n_feat if top_k is None else int(top_k)
    if not 1 <= k <= n_feat:
        raise ValueError(f"top_k must be in [1, {n_feat}], got {top_k}")
    points = np.where(positions < k, k - positions, 0).sum(axis=0)
    table = pd.DataFrame({"feature": features, "points": points, "mean_position": positions.mean(axis=0) + 1})
    table = table.sort_values(["points", "mean_position", "feature"], ascending=[False, True, True])
    table["rank"] = np.arange(1, n_feat + 1)
    return table.reset_index(drop=True)
