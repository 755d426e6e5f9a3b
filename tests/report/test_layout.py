"""fit_subplots: margins and gaps worked out from the text the axes will show."""

import pytest


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
    from biodl.report.figures import pyplot
    from biodl.report.layout import fit_subplots

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

