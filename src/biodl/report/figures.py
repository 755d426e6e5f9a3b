"""Matplotlib figures (headless Agg backend), saved atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    plt = _plt()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def boxplot_by_feature(values: np.ndarray, features: list[str], title: str, ylabel: str, path: str | Path) -> None:
    """Box plot of (R, F) per-run values, one box per feature, ordered by median (largest first)."""
    plt = _plt()
    order = np.argsort(-np.median(values, axis=0), kind="stable")
    fig, ax = plt.subplots(figsize=(0.6 * len(features) + 2, 4.5))
    ax.boxplot(values[:, order], showfliers=False)
    ax.set_xticks(np.arange(1, len(order) + 1), [features[i] for i in order], rotation=40, ha="right")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(title=title, ylabel=ylabel)
    _save(fig, path)


def borda_bar(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Bar chart of Borda points (a table from ``biodl.ranking.borda_count``), best on top."""
    plt = _plt()
    t = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(t) + 1.5))
    ax.barh(t["feature"], t["points"], color="#4c72b0")
    ax.set(title=title, xlabel="Borda points")
    _save(fig, path)


def _interp_roc(y: np.ndarray, s: np.ndarray, grid: np.ndarray) -> np.ndarray:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    return np.interp(grid, fpr, tpr)


def _interp_pr(y: np.ndarray, s: np.ndarray, grid: np.ndarray) -> np.ndarray:
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, s)
    # interpolated precision: the best precision at any recall >= r
    return np.where(recall[None, :] >= grid[:, None], precision[None, :], 0.0).max(axis=1)


def roc_pr_bands(y_true: list[np.ndarray], scores: list[np.ndarray], title: str, path: str | Path) -> None:
    """ROC and precision-recall curves over repeated splits: mean curve and 2.5-97.5% band."""
    plt = _plt()
    grid = np.linspace(0, 1, 101)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, fn, xl, yl in ((axes[0], _interp_roc, "false positive rate", "true positive rate"),
                           (axes[1], _interp_pr, "recall", "precision")):
        curves = np.array([fn(y, s, grid) for y, s in zip(y_true, scores, strict=True)])
        lo, hi = np.quantile(curves, [0.025, 0.975], axis=0)
        ax.fill_between(grid, lo, hi, alpha=0.25, label="95% of splits")
        ax.plot(grid, curves.mean(axis=0), lw=2, label=f"mean of {len(curves)} splits")
        ax.set(xlabel=xl, ylabel=yl, xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower right" if fn is _interp_roc else "lower left")
    axes[0].plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    prevalence = float(np.mean(np.concatenate(y_true)))
    axes[1].axhline(prevalence, ls="--", color="grey", lw=0.8)
    fig.suptitle(title)
    _save(fig, path)


def distributions_by_outcome(df: pd.DataFrame, target: str, features: list[str], path: str | Path) -> None:
    """One histogram per feature, the two outcome groups overlaid."""
    plt = _plt()
    cols = 3
    rows = -(-len(features) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows))
    for ax, col in zip(np.ravel(axes), features, strict=False):
        bins = np.histogram_bin_edges(df[col], bins=20)
        for k, color in ((0, "#4c72b0"), (1, "#dd8452")):
            ax.hist(df.loc[df[target] == k, col], bins=bins, alpha=0.6, color=color, label=f"{target}={k}",
                    density=True)
        ax.set_title(col, fontsize=10)
    for ax in np.ravel(axes)[len(features):]:
        ax.axis("off")
    np.ravel(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def per_class_curves(y: np.ndarray, prob: np.ndarray, classes: list[str], title: str, path: str | Path) -> None:
    """One-vs-rest ROC and precision-recall curves, one line per class, from (N,) labels and
    (N, K) probabilities; the legend gives each class's ROC AUC and average precision. A class
    absent from ``y`` has no curve (and says so)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = _plt()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.6))
    for k, name in enumerate(classes):
        pos = y == k
        if pos.all() or not pos.any():
            roc.plot([], [], label=f"{name}: no {'negatives' if pos.all() else 'positives'}")
            pr.plot([], [], label=f"{name}: -")
            continue
        fpr, tpr, _ = roc_curve(pos, prob[:, k])
        precision, recall, _ = precision_recall_curve(pos, prob[:, k])
        roc.plot(fpr, tpr, lw=1.4, label=f"{name}: AUC {roc_auc_score(pos, prob[:, k]):.3f}")
        pr.step(recall, precision, where="post", lw=1.4,
                label=f"{name}: AP {average_precision_score(pos, prob[:, k]):.3f} (prevalence {pos.mean():.2f})")
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, one class vs rest ({title})",
            xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="recall", ylabel="precision", title=f"Precision-recall ({title})", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (roc, pr):
        ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
