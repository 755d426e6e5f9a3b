"""Figures and tables of expression studies: per-sample distributions before and after each
normalisation step, library sizes, a clustered heat map with dendrograms, a PCA of samples, and
Kaplan-Meier curves per group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.expression import library_sizes, log_cpm, quantile_normalize, rpkm, size_factors, tpm
from .figures import pyplot, save_figure
from .tables import write_table

__all__ = ["distributions", "library_sizes_figure", "clustered_heatmap", "pca_scatter", "km_figure",
           "write_normalisation"]


def distributions(tables: dict[str, pd.DataFrame], path: str | Path, n_samples: int = 60, seed: int = 0) -> None:
    """One panel per normalisation step: the density of each of ``n_samples`` samples' values
    (as the Elegant SciPy chapter draws them), drawn as histograms' outlines on a shared grid."""
    plt = pyplot()
    cols = min(3, len(tables))
    rows = -(-len(tables) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel()[len(tables):]:
        ax.axis("off")
    for ax, (title, table) in zip(axes.ravel(), tables.items(), strict=False):
        picked = np.random.default_rng(seed).choice(table.shape[1], min(n_samples, table.shape[1]), replace=False)
        values = table.to_numpy()[:, np.sort(picked)]
        edges = np.linspace(np.nanpercentile(values, 0.5), np.nanpercentile(values, 99.5), 60)
        mid = (edges[1:] + edges[:-1]) / 2
        for j in range(values.shape[1]):
            density, _ = np.histogram(values[:, j], bins=edges, density=True)
            ax.plot(mid, density, lw=0.6, alpha=0.6)
        ax.set_title(title, fontsize=10)
        ax.set_yticks([])
    fig.suptitle(f"distributions of {values.shape[1]} samples, before and after each step", fontsize=11, y=1.0)
    save_figure(fig, path, tight_layout=True)


def library_sizes_figure(sizes: pd.Series, path: str | Path) -> None:
    """Histogram of the samples' library sizes (millions of reads over the table's genes)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist(sizes / 1e6, bins=40, color="#4c72b0")
    ax.set_xlabel("library size (million reads over these genes)")
    ax.set_ylabel("samples")
    ax.set_title(f"{len(sizes)} samples: median {np.median(sizes) / 1e6:.2f} M reads")
    save_figure(fig, path)


def clustered_heatmap(values: pd.DataFrame, sample_link: np.ndarray, gene_link: np.ndarray,
                      annotations: dict[str, pd.Series], path: str | Path) -> None:
    """Genes x samples ``values`` (z-scored per gene, clipped at +-3) ordered by the two
    dendrograms, drawn above (samples) and left (genes), with colour bars of sample
    ``annotations`` (e.g. found cluster, TCGA subclass) under the sample dendrogram."""
    from scipy.cluster.hierarchy import dendrogram

    plt = pyplot()
    fig = plt.figure(figsize=(11, 9))
    n_ann = len(annotations)
    top = fig.add_axes((0.2, 0.8, 0.7, 0.15))
    left = fig.add_axes((0.02, 0.1, 0.17, 0.6))
    heat = fig.add_axes((0.2, 0.1, 0.7, 0.6))
    cols = dendrogram(sample_link, ax=top, no_labels=True, color_threshold=0, above_threshold_color="#555")["leaves"]
    rows = dendrogram(gene_link, ax=left, orientation="left", no_labels=True, color_threshold=0,
                      above_threshold_color="#555")["leaves"]
    for ax in (top, left):
        ax.axis("off")
    z = values.to_numpy()
    z = (z - z.mean(axis=1, keepdims=True)) / (z.std(axis=1, keepdims=True) + 1e-9)
    image = heat.imshow(np.clip(z[np.ix_(rows[::-1], cols)], -3, 3), aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3,
                        interpolation="nearest")
    heat.set_xticks([])
    heat.set_yticks([])
    heat.set_xlabel(f"{z.shape[1]} samples")
    heat.set_ylabel(f"{z.shape[0]} genes (most variable)")
    for k, (name, labels) in enumerate(annotations.items()):
        ax = fig.add_axes((0.2, 0.705 + 0.09 * k / max(n_ann, 1), 0.7, 0.09 / max(n_ann, 1) * 0.8))
        lab = labels.reindex(values.columns).fillna("none").astype(str).to_numpy()[cols]
        kinds = sorted(set(lab))
        ax.imshow(np.array([[kinds.index(v) for v in lab]]), aspect="auto", cmap="tab10", vmin=0, vmax=9,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([0])
        ax.set_yticklabels([name], fontsize=8)
        handles = [plt.Rectangle((0, 0), 1, 1, color=plt.get_cmap("tab10")(i)) for i in range(len(kinds))]
        ax.legend(handles, kinds, ncol=len(kinds), fontsize=7, loc="lower left", bbox_to_anchor=(1.0, 0.0),
                  frameon=False)
    fig.colorbar(image, ax=heat, fraction=0.03, pad=0.01, label="z-score")
    save_figure(fig, path)


def pca_scatter(values: pd.DataFrame, labels: pd.Series, title: str, path: str | Path) -> np.ndarray:
    """Samples on the first two principal components of genes x samples ``values`` (genes
    centred), coloured by ``labels``; returns the two components' shares of the variance."""
    from sklearn.decomposition import PCA

    plt = pyplot()
    pca = PCA(n_components=2, random_state=0)
    xy = pca.fit_transform(values.to_numpy().T)
    lab = labels.reindex(values.columns).fillna("none").astype(str).to_numpy()
    fig, ax = plt.subplots(figsize=(6.4, 5))
    for k in sorted(set(lab)):
        m = lab == k
        ax.scatter(xy[m, 0], xy[m, 1], s=10, alpha=0.7, label=f"{k} ({int(m.sum())})")
    share = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({share[0]:.0%})")
    ax.set_ylabel(f"PC2 ({share[1]:.0%})")
    ax.legend(fontsize=8)
    ax.set_title(title)
    save_figure(fig, path)
    return share


def km_figure(time: np.ndarray, event: np.ndarray, groups: np.ndarray, title: str, path: str | Path) -> None:
    """Kaplan-Meier curves per group with 95% confidence bands (lifelines: exponential Greenwood),
    each group's size and deaths in the legend."""
    from lifelines import KaplanMeierFitter

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    groups = np.asarray(groups).astype(str)
    time, event = np.asarray(time, dtype=float), np.asarray(event, dtype=float)
    for g in sorted(set(groups)):
        m = groups == g
        km = KaplanMeierFitter(label=f"{g} (n={int(m.sum())}, {int(event[m].sum())} deaths)")
        km.fit(time[m], event[m]).plot_survival_function(ax=ax, ci_show=True)
    ax.set_xlabel("years")
    ax.set_ylabel("overall survival")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    save_figure(fig, path)


def write_normalisation(run_dir: Path, counts: pd.DataFrame, lengths: pd.Series | None, dropped: dict
                        ) -> dict[str, Any]:
    """The normalisation part of an expression study's run folder: ``library_sizes.png`` and
    ``.csv`` (with DESeq2 size factors), ``distributions.png`` (each step), the genes without a
    length and what was left out; returns its flat metrics."""
    libs = library_sizes(counts)
    library_sizes_figure(libs, run_dir / "library_sizes.png")
    sf = size_factors(counts)
    steps = {"log2(counts + 1)": np.log2(counts + 1), "log-CPM": log_cpm(counts),
             "log2(DESeq2-scaled + 1)": np.log2(counts / sf + 1)}
    out: dict[str, Any] = {"samples": counts.shape[1], "genes": counts.shape[0]}
    if lengths is not None:
        r, missing = rpkm(counts, lengths)
        steps["log2(RPKM + 1)"] = np.log2(r + 1)
        out["genes_without_length"] = len(missing)
        steps["log2(TPM + 1)"] = np.log2(tpm(counts, lengths)[0] + 1)
        write_table(pd.DataFrame({"gene": missing}), run_dir / "genes_without_length", "Genes left out of RPKM/TPM",
                    "No gene length is known for these genes.")
    steps["quantile-normalised log2(counts + 1)"] = quantile_normalize(np.log2(counts + 1))
    distributions(steps, run_dir / "distributions.png")
    write_table(pd.DataFrame({"sample": counts.columns, "library_size": libs.to_numpy(), "cpm_scale": 1e6 / libs,
                              "deseq2_size_factor": sf.to_numpy()}), run_dir / "library_sizes",
                "Library sizes and size factors", "DESeq2's median-of-ratios factors (genes with a zero left out).")
    write_table(pd.DataFrame([(k, len(v), ", ".join(map(str, v[:6]))) for k, v in dropped.items()],
                             columns=["left out", "n", "ids"]), run_dir / "left_out", "Samples (and genes) left out")
    out.update({"library_size_median": float(libs.median()), "size_factor_min": float(sf.min()),
                "size_factor_max": float(sf.max())})
    return out
