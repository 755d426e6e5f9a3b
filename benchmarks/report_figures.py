"""The figures a run's report draws, saved the way they were (``fig.tight_layout()`` where
asked, then ``savefig(bbox_inches="tight")``: each a dry draw of the figure before the real
one; the image grid an axes per image) beside the way ``save_figure`` saves them now (the
subplots fitted from the text they will show, ``fit_subplots``, with no dry draw; the figure
saved whole; cropping kept for the confusion matrix and its colour bar; the image grid one
axes). Same process, same inputs, alternating rounds; prints
ms per figure, the ratio, and each PNG's size both ways (they differ by the margins only).

    python benchmarks/report_figures.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


FILES = {"training curves": "curves.png", "reliability": "reliability.png", "class curves": "class_curves.png",
         "confusion": "confusion.png", "image examples": "examples.png", "attributions": "attr.png",
         "referral": "referral.png"}


def axes_per_image(images, captions, colors, title, path, cols: int = 8) -> None:
    """The image grid as it was drawn before: an axes per image, its caption as the axes' title."""
    from biodl.report import figures as F

    plt = F.pyplot()
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.95 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i])
            ax.set_title(F.tex_safe(captions[i]), fontsize=7, color=colors[i])
    fig.suptitle(F.tex_safe(title), fontsize=10)
    F.save_figure(fig, path, tight_layout=True)


def figures(out: Path, before: bool) -> dict:
    """name -> a call drawing and saving one figure into ``out`` (inputs of a typical run), the
    image grid ``before``'s way or today's."""
    import torch

    from biodl.interpret.figures import attribution_grid
    from biodl.report import figures as F

    rng = np.random.default_rng(0)
    epochs = np.arange(1, 11)
    history = pd.DataFrame({"epoch": epochs, "train/loss": 1 / epochs, "val/loss": 1.1 / epochs,
                            "val/roc_auc": 1 - 0.5 / epochs, "val/f1": 0.9 - 0.5 / epochs,
                            "lr": np.geomspace(1e-3, 1e-5, 10)})
    y = rng.integers(0, 2, 600)
    prob = np.clip(0.6 * y + 0.4 * rng.random(600), 0, 1)
    referral = {"entropy": pd.DataFrame({"referred": np.linspace(0, 0.5, 11), "accuracy": np.linspace(0.8, 0.95, 11)})}
    images = rng.integers(0, 255, (16, 50, 50, 3), dtype=np.uint8)
    tensors = [torch.rand(1, 3, 50, 50) for _ in range(4)]
    maps = [{"gradcam": torch.rand(50, 50), "ig": torch.rand(50, 50)} for _ in range(4)]
    return {
        "training curves": lambda: F.training_curves(history, out / FILES["training curves"], best_epoch=6),
        "reliability": lambda: F.reliability_diagram(y, prob, "IDC", "Test", out / FILES["reliability"], n_boot=200),
        "class curves": lambda: F.per_class_curves(y, np.stack([1 - prob, prob], 1), ["no IDC", "IDC"], "test",
                                                   out / FILES["class curves"], n_boot=200),
        "confusion": lambda: F.confusion_heatmap(np.array([[50, 3], [4, 40]]), ["no IDC", "IDC"], "Test",
                                                 out / FILES["confusion"]),
        "image examples": lambda: (axes_per_image if before else F.image_examples)(
            images, [f"IDC {i}" for i in range(16)], ["green"] * 16, "Most confident", out / FILES["image examples"]),
        "attributions": lambda: attribution_grid(tensors, maps, [f"case {i}" for i in range(4)],
                                                 out / FILES["attributions"]),
        "referral": lambda: F.referral_plot(referral, "Referral", out / FILES["referral"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from PIL import Image

    import biodl.interpret.figures as IF
    from biodl.report import figures as F

    now = F.save_figure

    def before(fig, path, tight_layout: bool = False, footnote: str | None = None) -> None:  # lay out, crop
        if footnote:  # below the figure, kept by the cropping
            fig.text(0.5, -0.01, footnote, ha="center", fontsize=8, color="grey")
        if tight_layout or any(ax.get_label() == "<colorbar>" for ax in fig.axes):  # the confusion matrix did
            fig.tight_layout()
        fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
        F.pyplot().close(fig)

    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"before": Path(tmp) / "before", "now": Path(tmp) / "now"}
        calls = {arm: figures(d, arm == "before") for arm, d in dirs.items()}
        for d in dirs.values():
            d.mkdir()
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds + 1):  # the first round warms fonts and caches up, untimed
            for arm, save in (("before", before), ("now", now)):
                F.save_figure = IF.save_figure = save  # the figure functions call their module's save_figure
                for name, call in calls[arm].items():
                    t = time.perf_counter()
                    call()
                    times.setdefault((arm, name), []).append(time.perf_counter() - t)
        F.save_figure = IF.save_figure = now
        print(f"ms per figure, median of {args.rounds} alternating rounds (120 dpi PNG)")
        print(f"  {'figure':16s} {'before':>8s} {'now':>8s} {'ratio':>6s}   PNG size before -> now")
        total = {"before": 0.0, "now": 0.0}
        for name in calls["now"]:
            ms = {arm: 1000 * statistics.median(times[(arm, name)][1:]) for arm in ("before", "now")}
            for arm in ms:
                total[arm] += ms[arm]
            sizes = [Image.open(dirs[arm] / FILES[name]).size for arm in ("before", "now")]
            print(f"  {name:16s} {ms['before']:8.1f} {ms['now']:8.1f} {ms['before'] / ms['now']:5.2f}x   "
                  f"{sizes[0][0]}x{sizes[0][1]} -> {sizes[1][0]}x{sizes[1][1]}")
        print(f"  {'all seven':16s} {total['before']:8.1f} {total['now']:8.1f} {total['before'] / total['now']:5.2f}x")


if __name__ == "__main__":
    main()
