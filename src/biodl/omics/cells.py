"""Single-cell preprocessing fitted on training cells only, saved with a run, applied to new cells.

The steps, in scanpy's standard order (Wolf et al. 2018) and with its defaults:

1. **Cell quality** (a rule, nothing fitted): at least ``min_genes`` genes detected and
   ``min_counts`` counts; :func:`quality` says which cells pass.
2. **Gene filter** (fitted): genes detected in at least ``min_cells`` training cells.
3. **Normalisation** (per cell): counts scaled to ``target_sum`` per cell (the library size over
   all of the cell's genes), then ``log1p``.
4. **Highly variable genes** (fitted; Seurat's dispersion method, scanpy's ``flavor="seurat"``):
   per gene the mean and dispersion (variance / mean) of the normalised counts; genes binned by
   log mean into 20 bins; the dispersion's log z-scored within its bin; the ``n_top_genes``
   highest kept.
5. **Scaling** (fitted): each chosen gene centred and divided by its training standard
   deviation, clipped at ``clip``.
6. **PCA** (fitted, optional, ``n_pcs`` > 0): the training cells' principal components.

Steps 4-6, fitted, become the first layer of a network (:class:`CellInput`), which takes the
log-normalised values of step 3 over a gene panel.

New cells are aligned by gene id: a model gene the new data lack is 0 (with a warning giving the
share present); under ``min_present`` of the model's genes is an error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from torch import nn
from torch.utils.data import Dataset

from ..data.cells import CellCounts
from ..errors import DataError

__all__ = ["quality", "normalise", "seurat_hvg", "CellPreprocess", "CellInput", "panel_matrix", "check_present",
           "CellRows"]


def quality(cells: CellCounts, min_genes: int = 200, min_counts: int = 0) -> np.ndarray:
    """(N,) True for the cells with at least ``min_genes`` genes detected and ``min_counts`` counts."""
    detected = np.diff(cells.x.indptr)
    total = np.asarray(cells.x.sum(axis=1)).ravel()
    return (detected >= min_genes) & (total >= min_counts)


def normalise(x: sparse.csr_matrix, target_sum: float = 1e4) -> sparse.csr_matrix:
    """(N, G) counts -> log1p(counts x target_sum / the cell's total); an empty cell stays 0."""
    total = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(target_sum, total, out=np.zeros_like(total), where=total > 0)
    out = sparse.diags(scale.astype(np.float32)) @ x.astype(np.float32)
    out = sparse.csr_matrix(out)
    out.data = np.log1p(out.data)
    return out


def seurat_hvg(logx: sparse.csr_matrix, n_top: int, n_bins: int = 20) -> np.ndarray:
    """Indices (sorted) of the ``n_top`` most variable genes of log-normalised cells (N, G) by
    Seurat's binned, normalised dispersion (see the module docstring)."""
    x = logx.copy()
    x.data = np.expm1(x.data)
    mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
    sq = x.multiply(x).mean(axis=0)
    var = (np.asarray(sq, dtype=np.float64).ravel() - mean ** 2) * x.shape[0] / max(x.shape[0] - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = np.log(np.where(mean > 0, var / np.where(mean > 0, mean, 1), np.nan))
        disp[~np.isfinite(disp)] = np.nan
    logmean = np.log1p(mean)
    bins = pd.cut(logmean, bins=n_bins)
    frame = pd.DataFrame({"disp": disp, "bin": bins})
    stats = frame.groupby("bin", observed=True)["disp"].agg(["mean", "std"])
    mu = stats["mean"].reindex(frame["bin"]).to_numpy()
    sd = stats["std"].reindex(frame["bin"]).to_numpy()
    one = np.isnan(sd)  # a bin of one gene: scanpy sets its normalised dispersion to 1 (kept in play)
    z = np.where(one, 1.0, (disp - mu) / np.where(one | (sd == 0), 1, sd))
    z = np.where(np.isfinite(z), z, -np.inf)
    order = np.argsort(-z, kind="stable")
    return np.sort(order[:min(n_top, int(np.isfinite(z).sum()) or n_top)])


@dataclass
class CellPreprocess:
    """Steps 2-6 of the module docstring, fitted by :meth:`fit` on training cells; :meth:`state`
    and :meth:`from_state` save and restore it (the arrays as float32)."""

    min_cells: int = 3
    n_top_genes: int = 2000
    target_sum: float = 1e4
    clip: float | None = 10.0
    n_pcs: int = 0
    min_present: float = 0.5
    seed: int = 0
    genes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    std: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    components: np.ndarray | None = None  # (n_pcs, genes)
    counts: dict[str, int] = field(default_factory=dict)

    def fit(self, cells: CellCounts) -> "CellPreprocess":
        """Fit on training cells (already quality-filtered): genes, HVGs, scaling, PCA."""
        detected = np.bincount(cells.x.indices, minlength=cells.x.shape[1])
        kept = np.flatnonzero(detected >= self.min_cells)
        if len(kept) == 0:
            raise DataError(cells.source, f"no gene is detected in {self.min_cells} or more training cells")
        logx = normalise(cells.x, self.target_sum)[:, kept]
        chosen = kept[seurat_hvg(logx, self.n_top_genes)]
        self.genes = cells.genes[chosen]
        values = normalise(cells.x, self.target_sum)[:, chosen].toarray().astype(np.float64)
        self.mean = values.mean(axis=0).astype(np.float32)
        std = values.std(axis=0, ddof=1) if len(values) > 1 else np.ones(len(chosen))
        self.std = np.where(std > 0, std, 1.0).astype(np.float32)
        self.counts = {"training_cells": len(cells), "genes_in": int(cells.x.shape[1]),
                       "genes_detected": int(len(kept)), "genes_chosen": int(len(chosen))}
        self.components = None
        if self.n_pcs:
            from sklearn.decomposition import PCA

            scaled = self._scale(values.astype(np.float32))
            k = min(self.n_pcs, *scaled.shape)
            self.components = PCA(k, random_state=self.seed).fit(scaled).components_.astype(np.float32)
        return self

    @property
    def n_features(self) -> int:
        return len(self.components) if self.components is not None else len(self.genes)

    def _scale(self, values: np.ndarray) -> np.ndarray:
        z = (values - self.mean) / self.std
        return np.clip(z, -self.clip, self.clip) if self.clip is not None else z

    def align(self, cells: CellCounts) -> np.ndarray:
        """(N, model genes) log-normalised values of ``cells`` in the model's gene order (a model
        gene the data lack is 0; :func:`check_present` says how many do)."""
        logx = normalise(cells.x, self.target_sum)
        where = pd.Index(cells.genes).get_indexer(self.genes)
        present = where >= 0
        out = np.zeros((len(cells), len(self.genes)), np.float32)
        out[:, present] = logx[:, where[present]].toarray()
        return out

    def transform(self, cells: CellCounts) -> np.ndarray:
        """(N, n_features) float32 features of new cells (see the module docstring on alignment)."""
        check_present(cells, self.genes, self.min_present)
        values = self.align(cells)
        z = self._scale(values)
        return (z @ self.components.T).astype(np.float32) if self.components is not None else z.astype(np.float32)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able settings and genes, arrays for safetensors)."""
        settings = {k: getattr(self, k) for k in ("min_cells", "n_top_genes", "target_sum", "clip", "n_pcs",
                                                   "min_present", "seed")}
        arrays = {"mean": self.mean, "std": self.std}
        if self.components is not None:
            arrays["components"] = self.components
        return {**settings, "genes": self.genes.tolist(), "counts": self.counts}, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray],
                   where: str | Path = "preprocess") -> "CellPreprocess":
        genes = np.asarray(meta.get("genes", []), dtype=str)
        mean, std = np.asarray(arrays.get("mean")), np.asarray(arrays.get("std"))
        comps = arrays.get("components")
        if mean.shape != (len(genes),) or std.shape != (len(genes),) or not (std > 0).all() or (
                comps is not None and (comps.ndim != 2 or comps.shape[1] != len(genes))):
            raise DataError(where, f"the saved preprocessing does not fit its {len(genes)} genes")
        kept = {k: meta[k] for k in ("min_cells", "n_top_genes", "target_sum", "clip", "n_pcs", "min_present",
                                     "seed") if k in meta}
        return cls(**kept, genes=genes, mean=mean.astype(np.float32), std=std.astype(np.float32),
                   components=None if comps is None else np.asarray(comps, np.float32),
                   counts=dict(meta.get("counts", {})))


class CellInput(nn.Module):
    """A fitted :class:`CellPreprocess` as the network's first layer: (B, P) log-normalised values
    over a gene panel -> (B, F) features: the run's genes picked (``select``: their panel
    positions), standardised, clipped, projected on the principal components when fitted. Its
    buffers are saved with the network's weights."""

    def __init__(self, n_genes: int, n_pcs: int = 0, clip: float | None = 10.0) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("select", torch.zeros(n_genes, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(n_genes))
        self.register_buffer("std", torch.ones(n_genes))
        self.register_buffer("components", torch.zeros(n_pcs, n_genes))

    @classmethod
    def fitted(cls, pre: "CellPreprocess", panel: np.ndarray) -> "CellInput":
        """The layer of ``pre`` for inputs over ``panel`` (every gene of ``pre`` must be in it)."""
        where = pd.Index(panel).get_indexer(pre.genes)
        if (where < 0).any():
            raise ValueError(f"gene {pre.genes[where < 0][0]!r} is not in the panel")
        n_pcs = 0 if pre.components is None else len(pre.components)
        layer = cls(len(pre.genes), n_pcs, pre.clip)
        layer.select.copy_(torch.from_numpy(where))
        layer.mean.copy_(torch.from_numpy(pre.mean))
        layer.std.copy_(torch.from_numpy(pre.std))
        if n_pcs:
            layer.components.copy_(torch.from_numpy(pre.components))
        return layer

    @property
    def n_features(self) -> int:
        return len(self.components) if len(self.components) else len(self.select)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.index_select(1, self.select) - self.mean) / self.std
        if self.clip is not None:
            z = z.clamp(-self.clip, self.clip)
        return z @ self.components.T if len(self.components) else z


def panel_matrix(cells: CellCounts, pre: Any) -> sparse.csr_matrix:
    """(N, P) log-normalised values of ``cells`` over ``pre.panel`` (a gene the cells lack is 0);
    ``pre`` (a run's preprocess.json, or a dict) gives ``panel``, ``normalised`` and ``target_sum``."""
    get = (lambda k: pre[k]) if isinstance(pre, dict) else (lambda k: getattr(pre, k))
    values = cells.x if get("normalised") else normalise(cells.x, get("target_sum"))
    panel = get("panel")
    where = pd.Index(cells.genes).get_indexer(panel)
    have = np.flatnonzero(where >= 0)
    coo = values[:, where[have]].tocoo()
    return sparse.csr_matrix((coo.data, (coo.row, have[coo.col])), shape=(len(cells), len(panel)), dtype=np.float32)


def check_present(cells: CellCounts, genes: np.ndarray | list[str], min_present: float) -> float:
    """The share of the model's ``genes`` that ``cells`` hold: under ``min_present`` a DataError,
    under 1 a warning (the missing genes count 0)."""
    genes = np.asarray(genes, dtype=str)
    share = float(np.isin(genes, cells.genes).mean()) if len(genes) else 0.0
    if share < min_present:
        raise DataError(cells.source, f"holds {share:.0%} of the model's {len(genes)} genes (fewer than "
                                      f"{min_present:.0%}); are the gene ids of the same kind (e.g. {genes[0]})?")
    if share < 1:
        warnings.warn(f"{cells.source}: {share:.1%} of the model's {len(genes)} genes are present; the others count "
                      "as 0", stacklevel=3)
    return share


class CellRows(Dataset):
    """(cells, panel) sparse values and labels as a dataset whose items (or index tensors: one
    gather per batch) are dense float32 rows and int64 labels."""

    batch_indexable = True

    def __init__(self, x: sparse.csr_matrix, labels: np.ndarray) -> None:
        self.x, self.labels = x, torch.as_tensor(np.asarray(labels), dtype=torch.int64)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows = index.numpy() if isinstance(index, torch.Tensor) else index
        dense = torch.from_numpy(np.asarray(self.x[rows].todense(), dtype=np.float32))
        return (dense if np.ndim(rows) else dense[0]), self.labels[index]
