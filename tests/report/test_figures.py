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


def _texts(fig) -> list:
    """Every non-empty text the drawn figure shows: titles, axis labels, tick labels, offset texts."""
    found = [t for t in fig.texts if t.get_text()] + ([fig._suptitle] if fig._suptitle else [])
    for ax in fig.axes:
        found += [ax.title, ax.xaxis.label, ax.yaxis.label, ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()]
        for axis, at in ((ax.xaxis, 0), (ax.yaxis, 1)):  # the tick labels inside the view: those drawn
            lo, hi = sorted(axis.get_view_interval())
            found += [t for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True)
                      if lo <= t.get_position()[at] <= hi]
    return [t for t in found if t.get_visible() and t.get_text()]


def _inside_and_apart(fig) -> None:
    """Each text lies inside the figure and outside every axes' box but its own."""
    renderer = fig.canvas.get_renderer()
    boxes = {ax: ax.get_window_extent(renderer) for ax in fig.axes}
    for t in _texts(fig):
        bb = t.get_window_extent(renderer)
        assert fig.bbox.x0 <= bb.x0 and bb.x1 <= fig.bbox.x1 and fig.bbox.y0 <= bb.y0 and bb.y1 <= fig.bbox.y1, t
        for ax, box in boxes.items():
            if t.axes is not ax and t.figure is not None and t not in fig.texts:
                assert not bb.overlaps(box), (t, ax.get_title())


def test_subplots_are_fitted_from_the_text_they_will_show():
    """Log axes (mathtext labels), an offset text, shared x with height ratios, long tick labels
    on the right column, titles and a suptitle: fitted without a dry draw, nothing cut or overlapping
    (the default layout cuts and overlaps them)."""
    from biodl.report.figures import fit_subplots, pyplot

    plt = pyplot()

    def draw():
        fig, axes = plt.subplots(2, 2, figsize=(7, 5), sharex="col", gridspec_kw={"height_ratios": [3, 1]})
        axes[0, 0].plot([1, 10], [1e-5, 1e-3])
        axes[0, 0].set_yscale("log")
        axes[1, 0].plot([1, 10], [1.00001, 1.00005])  # labels as an offset from 1
        axes[0, 1].plot([0, 1], [0, 1])
        axes[0, 1].set_yticks([0, 1], ["a long tick label", "another long one"])
        axes[1, 1].bar([0.2, 0.8], [3000, 12000], width=0.3)
        for ax in axes.ravel():
            ax.set(title="a panel's title" if ax in axes[0] else "", ylabel="y label")
        for ax in axes[1]:
            ax.set_xlabel("an x label")
        fig.suptitle("the figure's title")
        return fig

    fig = draw()
    fig.canvas.draw()
    with pytest.raises(AssertionError):
        _inside_and_apart(fig)
    plt.close(fig)
    fig = draw()
    fit_subplots(fig)
    fig.canvas.draw()
    _inside_and_apart(fig)
    assert fig.axes[1].get_window_extent().x0 - fig.axes[0].get_window_extent().x1 < 3 * 100  # gaps, not gulfs
    plt.close(fig)


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
