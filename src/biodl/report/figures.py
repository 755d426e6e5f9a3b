"""Matplotlib figures (headless Agg backend), saved atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write
from .layout import fit_subplots, pad_inches, text_inches


__all__ = [
    "pyplot", "save_figure", "tex_safe", "boxplot_by_feature", "borda_bar", "roc_pr_bands",
    "model_curves", "distributions_by_outcome", "per_class_curves",
    "training_curves", "confusion_heatmap", "reliability_diagram", "image_examples", "referral_plot", "cell_map",
]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display; imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, tight_layout: bool = False, footnote: str | None = None) -> None:
    """Write ``fig`` as a PNG (120 dpi) atomically, then close it. ``tight_layout``: fit the
    subplots, their labels and titles into the figure (:func:`fit_subplots`), a ``footnote``
    in grey under them, and save it whole; otherwise the PNG is cropped to what was drawn
    (``bbox_inches="tight"``: a layout pass as costly as the drawing itself, for figures with
    text outside their axes' grid)."""
    plt = pyplot()
    if tight_layout or footnote:
        from matplotlib.font_manager import FontProperties

        height = text_inches(footnote, FontProperties(size=8))[1] if footnote else 0.0
        fit_subplots(fig, below=height)
        if footnote:
            fig.text(0.5, pad_inches() / 2 / fig.get_size_inches()[1], footnote, ha="center", va="bottom", fontsize=8,
                     color="grey")
    crop = None if tight_layout or footnote else "tight"
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches=crop))
    plt.close(fig)


def boxplot_by_feature(values: np.ndarray, features: list[str], title: str, ylabel: str, path: str | Path) -> None:
    """Box plot of (R, F) per-run values, one box per feature, ordered by median (largest first)."""
    plt = pyplot()
    order = np.argsort(-np.median(values, axis=0), kind="stable")
    fig, ax = plt.subplots(figsize=(0.6 * len(features) + 2, 4.5))
    ax.boxplot(values[:, order], showfliers=False)
    ax.set_xticks(np.arange(1, len(order) + 1), [features[i] for i in order], rotation=40, ha="right")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(title=title, ylabel=ylabel)
    save_figure(fig, path)


def borda_bar(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Bar chart of Borda points (a table from ``biodl.evaluation.ranking.borda_count``), best on top."""
    plt = pyplot()
    t = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(t) + 1.5))
    ax.barh(t["feature"], t["points"], color="#4c72b0")
    ax.set(title=title, xlabel="Borda points")
    save_figure(fig, path)


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
    plt = pyplot()
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
    save_figure(fig, path)


def distributions_by_outcome(df: pd.DataFrame, target: str, features: list[str], path: str | Path) -> None:
    """One histogram per feature, the two outcome groups overlaid."""
    plt = pyplot()
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
    save_figure(fig, path, tight_layout=True)


def per_class_curves(y: np.ndarray, prob: np.ndarray, classes: list[str], title: str, path: str | Path,
                     groups: np.ndarray | None = None, n_boot: int = 200, seed: int = 0) -> None:
    """One-vs-rest ROC and precision-recall curves, one line per class, from (N,) labels and
    (N, K) probabilities, each in its pointwise 95% bootstrap band (``n_boot`` resamples; with
    ``groups``, (N,) patient ids, whole patients are resampled); the legend gives each class's
    ROC AUC and average precision. A class absent from ``y`` has no curve (and says so)."""
    lines = [(tex_safe(name), y == k, prob[:, k]) for k, name in enumerate(classes)]
    _banded_curves(lines, f"one class vs rest ({title})", title, path, groups, n_boot, seed)


def model_curves(positive: np.ndarray, scores: dict[str, np.ndarray], title: str, path: str | Path,
                 groups: np.ndarray | None = None, n_boot: int = 200, seed: int = 0, unit: str = "groups") -> None:
    """ROC and precision-recall curves of several models on the same cases, one line per model
    (``scores``: name -> (N,) score of the positive class; ``positive``: (N,) bool), each in its
    pointwise 95% bootstrap band, the same resamples for every model (``groups`` resampled whole)."""
    lines = [(tex_safe(name), np.asarray(positive, bool), np.asarray(s)) for name, s in scores.items()]
    _banded_curves(lines, title, title, path, groups, n_boot, seed, unit)


def _banded_curves(lines: list[tuple[str, np.ndarray, np.ndarray]], roc_title: str, pr_title: str,
                   path: str | Path, groups: np.ndarray | None, n_boot: int, seed: int,
                   unit: str = "patients") -> None:
    """ROC and PR axes side by side, a line and its band for each (label, positive, score);
    ``unit`` names what ``groups`` are in the footnote."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    from ..evaluation import bootstrap_counts, curve_bands

    plt = pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.6))
    counts = bootstrap_counts(len(lines[0][1]), n_boot, seed, groups)
    grid = np.linspace(0, 1, 101)
    for name, pos, score in lines:
        if pos.all() or not pos.any():
            roc.plot([], [], label=f"{name}: no {'negatives' if pos.all() else 'positives'}")
            pr.plot([], [], label=f"{name}: -")
            continue
        fpr, tpr, _ = roc_curve(pos, score)
        precision, recall, _ = precision_recall_curve(pos, score)
        line, = roc.plot(fpr, tpr, lw=1.4, label=f"{name}: AUC {roc_auc_score(pos, score):.3f}")
        pr.step(recall, precision, where="post", lw=1.4, color=line.get_color(),
                label=f"{name}: AP {average_precision_score(pos, score):.3f} (prevalence {pos.mean():.2f})")
        bands = curve_bands(pos, score, counts, grid)
        for ax, (lo, hi) in ((roc, bands["roc"]), (pr, bands["pr"])):
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, {roc_title}",
            xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="recall", ylabel="precision", title=f"Precision-recall ({pr_title})", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (roc, pr):
        ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path, tight_layout=True, footnote=f"Bands: pointwise 95% bootstrap ({n_boot} resamples of "
                f"{unit if groups is not None else 'cases'}; precision-recall: interpolated precision)")


def tex_safe(text: object) -> str:
    """A label matplotlib prints as given: ``$`` would start mathtext (user class names may hold it)."""
    return str(text).replace("$", r"\$")


def training_curves(history: pd.DataFrame, path: str | Path, best_epoch: int | None = None) -> None:
    """Losses, validation metrics and learning rate per epoch, from a run's ``metrics.csv``
    (columns ``epoch``, ``train/loss``, ``val/...``, ``lr``)."""
    plt = pyplot()
    metrics = [c for c in history.columns if c.startswith("val/") and c != "val/loss"]
    panels = [("loss", [c for c in ("train/loss", "val/loss") if c in history])]
    panels += [("validation metrics", metrics)] if metrics else []
    panels += [("learning rate", ["lr"])] if "lr" in history else []
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (title, cols) in zip(axes[0], panels, strict=True):
        for c in cols:
            ax.plot(history["epoch"], history[c], marker="o" if len(history) <= 30 else None, ms=3, lw=1.4,
                    label=c.split("/", 1)[-1] if title == "validation metrics" else c)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"best epoch {best_epoch}")
        ax.set(title=title, xlabel="epoch")
        if title == "learning rate" and (history["lr"] > 0).all():
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    save_figure(fig, path, tight_layout=True)


def confusion_heatmap(counts: np.ndarray, classes: list[str], title: str, path: str | Path) -> None:
    """(K, K) counts (rows: true class, columns: predicted) as a heat map of row-normalised
    rates, each cell labelled with its count and rate."""
    plt = pyplot()
    counts = np.asarray(counts)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 * k + 2.5, 0.9 * k + 2))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    names = [tex_safe(c) for c in classes]
    ax.set_xticks(range(k), names, rotation=40 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), names)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{counts[i, j]}\n{rates[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.6 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    save_figure(fig, path)  # cropped to what was drawn: one panel and its colour bar, nothing to lay out


def reliability_diagram(y: np.ndarray, prob: np.ndarray, what: str, title: str, path: str | Path,
                        groups: np.ndarray | None = None, n_boot: int = 200, seed: int = 0
                        ) -> tuple[list[dict[str, float]], float]:
    """Observed rate against mean predicted probability in 10 bins, each with its 95% bootstrap
    interval (``n_boot`` resamples; with ``groups``, (N,) patient ids, of whole patients), and
    the bin counts below; ``y``, ``prob`` and the returned (bins, ECE) as in
    ``biodl.evaluation.calibration_bins`` (given the resamples, so the bins hold the intervals)."""
    from ..evaluation import bootstrap_counts, calibration_bins

    bins, ece = calibration_bins(y, prob, counts=bootstrap_counts(len(y), n_boot, seed, groups))
    plt = pyplot()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    if bins:
        mid = [(b["lo"] + b["hi"]) / 2 for b in bins]
        width = bins[0]["hi"] - bins[0]["lo"]
        ax.bar(mid, [b["observed"] for b in bins], width=width * 0.9, alpha=0.35, color="#4c72b0",
               edgecolor="#4c72b0", label=f"observed ({what})")
        observed = np.array([b["observed"] for b in bins])
        spread = [observed - [b["observed_low"] for b in bins], [b["observed_high"] for b in bins] - observed]
        ax.errorbar([b["confidence"] for b in bins], observed, yerr=np.maximum(spread, 0), fmt="o-", color="#dd8452",
                    ms=4, capsize=2, lw=1.2, label=f"bin mean, 95% CI ({'patients' if groups is not None else 'cases'}"
                                                    " resampled)")
        hist.bar(mid, [b["n"] for b in bins], width=width * 0.9, color="grey")
    ax.set(ylabel=f"observed {what}", xlim=(0, 1), ylim=(0, 1.02), title=f"{title}: ECE {ece:.3f}")
    ax.legend(fontsize=8, loc="upper left")
    hist.set(xlabel="predicted probability", ylabel="predictions")
    save_figure(fig, path, tight_layout=True)
    return bins, ece


def image_examples(images: np.ndarray, captions: list[str], colors: list[str], title: str, path: str | Path,
                   cols: int = 8) -> None:
    """A grid of (N, H, W, C) uint8 images, each with a caption in its colour above it (shrunk
    to its cell's width if longer), the title on top: one axes holding every image, placed in
    1.7 x 1.95 inch cells (an axes per image would cost ~10 ms each to make and lay out)."""
    plt = pyplot()
    rows = max(1, -(-len(images) // cols))
    cell_w, cell_h, head = 1.7, 1.95, 0.4
    width, height = cell_w * cols, cell_h * rows + head
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    side = min(cell_w, cell_h - 0.3) - 0.1  # the image box under each caption, in inches
    for i, img in enumerate(images):
        x, y = (i % cols) * cell_w, head + (i // cols) * cell_h
        h, w = img.shape[:2]
        scale = side / max(h, w)
        left, top = x + (cell_w - w * scale) / 2, y + 0.3 + (side - h * scale) / 2
        gray = img.shape[-1] == 1
        ax.imshow(img[..., 0] if gray else img, cmap="gray" if gray else None,
                  extent=(left, left + w * scale, top + h * scale, top))
        caption, size = _fit_caption(str(captions[i]), cell_w - 0.1)
        ax.text(x + cell_w / 2, y + 0.25, tex_safe(caption), ha="center", va="bottom", fontsize=size, color=colors[i])
    ax.text(width / 2, head / 2, tex_safe(title), ha="center", va="center", fontsize=10)
    ax.set(xlim=(0, width), ylim=(height, 0), aspect="auto")
    save_figure(fig, path, tight_layout=True)


def _fit_caption(caption: str, width: float, size: float = 7.0, smallest: float = 5.0) -> tuple[str, float]:
    """``caption`` and the font size (points) that fit it into ``width`` inches: shrunk down to
    ``smallest``, then cut short with an ellipsis."""
    from matplotlib.font_manager import FontProperties

    def wide(text: str, points: float) -> float:
        return text_inches(tex_safe(text), FontProperties(size=points))[0]

    size = max(smallest, min(size, size * width / max(wide(caption, size), 1e-9)))
    if wide(caption, size) <= width * 1.001:
        return caption, size
    while len(caption) > 1 and wide(caption + "…", size) > width:
        caption = caption[:-1]
    return caption.rstrip() + "…", size


def referral_plot(curves: dict[str, pd.DataFrame], title: str, path: str | Path) -> None:
    """Accuracy of the kept cases against the fraction referred, one line per uncertainty
    measure (``curves``: name -> ``uncertainty.referral_curve`` table), in its 95% band where
    the table has one (``accuracy_low``, ``accuracy_high``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, df in curves.items():
        line, = ax.plot(df["referred"], df["accuracy"], marker="o", ms=3, label=name)
        if {"accuracy_low", "accuracy_high"} <= set(df):
            ax.fill_between(df["referred"], df["accuracy_low"], df["accuracy_high"], color=line.get_color(),
                            alpha=0.15, lw=0, label=f"{name}: 95% CI")
    ax.set(xlabel="fraction referred to a human (most uncertain first)", ylabel="accuracy of the cases kept",
           title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path, tight_layout=True)


def cell_map(features: np.ndarray, true: np.ndarray, pred: np.ndarray, marked: np.ndarray, classes: list[str],
             path: str | Path, seed: int = 0, what: str = "marked") -> None:
    """Two t-SNE panels of (N, D) ``features`` (e.g. principal components of cells): coloured by
    true class and by predicted class, ``marked`` cases (``what``: e.g. doublets) as crosses."""
    from sklearn.manifold import TSNE

    n = len(features)
    xy = TSNE(n_components=2, perplexity=float(min(30, max(2, (n - 1) // 3))), init="pca", random_state=seed
              ).fit_transform(np.asarray(features, dtype=np.float64))
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    colours = plt.get_cmap("tab10")
    for ax, labels, title in ((axes[0], true, "true class"), (axes[1], pred, "predicted class")):
        for c, name in enumerate(map(tex_safe, classes)):
            for sel, marker, size in ((~marked, "o", 10), (marked, "x", 14)):
                pick = sel & (labels == c)
                if pick.any():
                    ax.scatter(xy[pick, 0], xy[pick, 1], s=size, marker=marker, color=colours(c % 10),
                               label=name if marker == "o" else None, linewidths=0.8)
        ax.set(title=f"Cells by {title} (t-SNE; x: {what})", xticks=[], yticks=[])
    axes[0].legend(fontsize=7, markerscale=1.5)
    save_figure(fig, path)
