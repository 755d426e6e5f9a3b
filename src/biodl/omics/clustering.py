"""Unsupervised structure of an expression table (genes x samples): hierarchical clustering of
samples and genes, spectral bi-clustering, and found clusters against known classes.

The default recipe is the TCGA melanoma paper's (Cell 2015): the most variable genes, each
centred on its median, samples clustered by average linkage on 1 - Pearson correlation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["most_variable", "Clustering", "hierarchical", "spectral_biclusters", "compare_partitions"]


def most_variable(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` rows (genes) of largest variance across the columns (samples), largest first."""
    return table.loc[table.var(axis=1).sort_values(ascending=False, kind="stable").index[:n]]


@dataclass
class Clustering:
    """Sample clusters (1..k, as a Series over the samples) and both trees (scipy linkages)."""

    samples: pd.Series
    sample_link: np.ndarray
    gene_link: np.ndarray


def hierarchical(values: pd.DataFrame, k: int, method: str = "average", metric: str = "correlation") -> Clustering:
    """Cut the samples' tree of genes x samples ``values`` (genes centred on their medians) into
    ``k`` clusters, numbered by size (1 the largest); the genes' tree is built the same way."""
    from scipy.cluster.hierarchy import fcluster, linkage

    centred = values.sub(values.median(axis=1), axis=0).to_numpy()
    sample_link = linkage(centred.T, method=method, metric=metric)
    gene_link = linkage(centred, method=method, metric=metric)
    raw = fcluster(sample_link, k, "maxclust")
    sizes = pd.Series(raw).value_counts()
    renumber = {c: i + 1 for i, c in enumerate(sorted(sizes.index, key=lambda c: (-sizes[c], c)))}
    return Clustering(pd.Series([renumber[c] for c in raw], index=values.columns, name="cluster"), sample_link,
                      gene_link)


def spectral_biclusters(values: pd.DataFrame, n_samples: int, n_genes: int, seed: int = 0
                        ) -> tuple[pd.Series, pd.Series]:
    """Kluger et al.'s spectral bi-clustering (scikit-learn) of genes x samples ``values``: a
    checkerboard of ``n_genes`` gene clusters by ``n_samples`` sample clusters. Returns (sample
    cluster, gene cluster), numbered from 1."""
    from sklearn.cluster import SpectralBiclustering

    model = SpectralBiclustering(n_clusters=(n_genes, n_samples), random_state=seed).fit(values.to_numpy())
    return (pd.Series(model.column_labels_ + 1, index=values.columns, name="bicluster"),
            pd.Series(model.row_labels_ + 1, index=values.index, name="gene_bicluster"))


def compare_partitions(found: pd.Series, known: pd.Series) -> tuple[pd.DataFrame, float, int]:
    """(contingency table of found clusters x known classes, adjusted Rand index, samples
    compared) over the samples that have a known class."""
    from sklearn.metrics import adjusted_rand_score

    both = pd.concat([found.rename("found"), known.rename("known")], axis=1, join="inner")
    both = both[both["known"].notna() & (both["known"].astype(str) != "")]
    table = pd.crosstab(both["found"], both["known"])
    return table, float(adjusted_rand_score(both["known"], both["found"])), int(len(both))
