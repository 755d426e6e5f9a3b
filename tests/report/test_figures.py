import numpy as np
import pytest
from PIL import Image

from biodl.report import per_class_curves
from biodl.evaluation import one_vs_rest_scores as _one_vs_rest


def test_per_class_curves_and_scores_handle_a_class_missing_from_the_labels(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)  # class 2 never occurs
    prob = rng.dirichlet(np.ones(3), 200)
    prob[:, 1] += 1.0 * y  # class 1 is detectable
    prob /= prob.sum(axis=1, keepdims=True)
    auc, ap = _one_vs_rest(y, prob)
    from sklearn.metrics import average_precision_score, roc_auc_score

    assert auc[1] == pytest.approx(roc_auc_score(y == 1, prob[:, 1]), abs=1e-12) and auc[1] > 0.8
    assert ap[0] == pytest.approx(average_precision_score(y == 0, prob[:, 0]), abs=1e-12)
    assert np.isnan(auc[2]) and np.isnan(ap[2])
    per_class_curves(y, prob, ["a", "b", "<never>"], "test", tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as im:
        im.load()
        assert im.format == "PNG" and im.width > 2 * im.height > 400


def _labelled(plt):
    """Two panels whose long tick labels, axis labels and titles spill out of the default margins."""
    fig, axes = plt.subplots(1, 2, figsize=(5, 3))
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set_yticks([0, 1], ["a long tick label", "another long one"])
        ax.set_ylabel("a y label", fontsize=14)
        ax.set(title="a title", xlabel="an x label")
    fig.suptitle("a figure title")
    return fig, axes


def test_a_laid_out_figure_is_saved_whole_with_every_label_inside(tmp_path):
    from biodl.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = _labelled(plt)
    texts = [fig._suptitle] + [t for ax in axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label,
                                                          *ax.get_yticklabels())]
    renderer = fig.canvas.get_renderer()
    assert any(t.get_window_extent(renderer).x0 < 0 for t in texts)  # as drawn, a label is cut off
    save_figure(fig, tmp_path / "whole.png", tight_layout=True)
    with Image.open(tmp_path / "whole.png") as im:
        assert im.size == (5 * 120, 3 * 120)  # the figure as it is: no cropping pass
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()  # the figure is closed: measure it on a new canvas
    panels = [ax.get_window_extent(renderer) for ax in axes]
    assert panels[0].x1 < panels[1].x0  # the panels' labels don't overlap either
    for t in texts:
        bb = t.get_window_extent(renderer)
        assert fig.bbox.x0 <= bb.x0 and bb.x1 <= fig.bbox.x1 and fig.bbox.y0 <= bb.y0 and bb.y1 <= fig.bbox.y1, t


def test_text_outside_the_panels_is_kept_by_cropping_to_what_was_drawn(tmp_path):
    from biodl.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1], [0, 1])
    fig.text(0.5, -0.15, "a footnote below the figure", ha="center")
    save_figure(fig, tmp_path / "cropped.png")
    with Image.open(tmp_path / "cropped.png") as im:
        pixels = np.asarray(im.convert("L"))
    assert pixels.shape[0] > 3 * 120 * 1.05  # grown to hold the footnote
    assert (pixels[-30:] < 128).any()  # and the footnote's ink is in the bottom rows


def test_a_footnote_goes_under_the_fitted_subplots_inside_the_figure(tmp_path):
    from biodl.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set(xlabel="recall", title="a title")
    save_figure(fig, tmp_path / "noted.png", tight_layout=True, footnote="Bands: pointwise 95% bootstrap")
    with Image.open(tmp_path / "noted.png") as im:
        assert im.size == (6 * 120, 3 * 120)  # saved whole
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    note, = fig.texts
    assert note.get_text() == "Bands: pointwise 95% bootstrap"
    bb = note.get_window_extent(renderer)
    assert 0 <= bb.y0 and all(bb.y1 < ax.xaxis.label.get_window_extent(renderer).y0 for ax in axes)


def test_image_examples_puts_each_image_in_its_cell_under_its_caption(tmp_path):
    """Cells of 1.7 x 1.95 inches under a 0.4 inch title band, each image centred in the box under
    its caption; a caption too long for its cell is shrunk to it, not spilled into the next."""
    from biodl.report.figures import image_examples

    images = np.zeros((3, 10, 20, 3), np.uint8)
    colours = ([255, 0, 0], [0, 255, 0], [0, 0, 255])
    for img, colour in zip(images, colours, strict=True):
        img[:] = colour
    image_examples(images, ["red", "a caption far too long for the width of one cell " * 2, "blue"],
                   ["black"] * 3, "title", tmp_path / "grid.png", cols=2)
    with Image.open(tmp_path / "grid.png") as im:
        pixels = np.asarray(im.convert("RGB")).astype(int)
    dpi = 120
    assert pixels.shape == (round((2 * 1.95 + 0.4) * dpi), round(2 * 1.7 * dpi), 3)
    for i, colour in enumerate(colours):
        x, y = (i % 2 + 0.5) * 1.7, 0.4 + (i // 2) * 1.95 + 0.3 + 0.775
        assert pixels[int(y * dpi), int(x * dpi)].tolist() == colour, i
    assert (pixels[int((0.4 + 1.95 + 1.075) * dpi), int(2.55 * dpi)] == 255).all()  # the fourth cell is empty
    band = pixels[int(0.4 * dpi):int(0.7 * dpi)].sum(axis=2) < 300  # the first row's captions: ink
    ink = np.flatnonzero(band.any(axis=0)) / dpi
    first, second = ink[ink < 1.7], ink[ink >= 1.7]
    assert first.min() > 0.85 - 0.4 and first.max() < 0.85 + 0.4  # "red", centred in its cell
    assert second.min() > 1.7 and second.max() < 3.4 and second.max() - second.min() > 1.2  # shrunk to its cell
