"""Subplots laid out from the text they will show (``fit_subplots``): ``fig.tight_layout()``
without its dry draw of the figure."""

from __future__ import annotations

__all__ = ["fit_subplots", "pad_inches", "text_inches"]


def fit_subplots(fig, below: float = 0.0) -> None:
    """``fig.tight_layout()`` worked out from the text each axes will show instead of from a
    dry draw of the figure (which costs as much as drawing it): the margins and the gaps of a
    grid of subplots hold each axis's tick labels (from its locator and formatter), the axis
    labels, the titles and the suptitle, with matplotlib's padding (1.08 font sizes).
    ``below``: inches kept free under the subplots. Axes placed by hand are left where they
    are; a figure it cannot measure (axes outside one grid, such as colour bars; rotated tick
    labels) gets ``fig.tight_layout()``; text it does not see (``ax.text`` or a legend placed
    outside the axes) needs a cropped figure."""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    specs = [ax.get_subplotspec() for ax in axes]
    if all(s is None for s in specs):  # axes the caller placed (``fig.add_axes``): nothing to fit
        return
    if None in specs or len({s.get_gridspec() for s in specs}) != 1:
        fig.tight_layout()
        return
    try:
        need = [_margins(ax) for ax in axes]
    except _Unmeasured:
        fig.tight_layout()
        return
    nrows, ncols = specs[0].get_gridspec().get_geometry()

    def most(side: str, where) -> float:
        return max((n[side] for n, s in zip(need, specs, strict=True) if where(s)), default=0.0)

    pad = pad_inches()
    left, right = most("left", lambda s: s.colspan.start == 0), most("right", lambda s: s.colspan.stop == ncols)
    top, bottom = most("top", lambda s: s.rowspan.start == 0), most("bottom", lambda s: s.rowspan.stop == nrows)
    wgap = max((most("right", lambda s, c=c: s.colspan.stop == c) + most("left", lambda s, c=c: s.colspan.start == c)
                for c in range(1, ncols)), default=0.0) + pad
    hgap = max((most("bottom", lambda s, r=r: s.rowspan.stop == r) + most("top", lambda s, r=r: s.rowspan.start == r)
                for r in range(1, nrows)), default=0.0) + pad
    width, height = fig.get_size_inches()
    title = fig.get_suptitle() and fig._suptitle
    if title and title.get_in_layout():
        top += text_inches(title.get_text(), title.get_fontproperties())[1] + (1 - title.get_position()[1]) * height
    left, right, top, bottom = left + pad, right + pad, top + pad, bottom + below + pad
    each_w = (width - left - right - (ncols - 1) * wgap) / ncols
    each_h = (height - top - bottom - (nrows - 1) * hgap) / nrows
    if each_w <= 0 or each_h <= 0:  # no room: let matplotlib shrink what it can
        fig.tight_layout()
        return
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wgap / each_w, hspace=hgap / each_h)


class _Unmeasured(Exception):
    """Text whose extent :func:`fit_subplots` does not work out (rotated tick labels)."""


def pad_inches() -> float:
    """matplotlib's ``tight_layout`` padding in inches: 1.08 font sizes."""
    from matplotlib import rcParams

    return 1.08 * rcParams["font.size"] / 72


def text_inches(text: str | None, prop) -> tuple[float, float]:
    """(width, height) in inches of ``text`` (lines, mathtext between $) set in font ``prop``."""
    from matplotlib.cbook import is_math_text
    from matplotlib.textpath import text_to_path

    if not text:
        return 0.0, 0.0
    lines = str(text).split("\n")
    width = max((text_to_path.get_text_width_height_descent(line, prop, ismath=is_math_text(line))[0]
                 for line in lines if line), default=0.0)
    return width / 72, len(lines) * 1.2 * prop.get_size_in_points() / 72


def _tick_labels(axis) -> tuple[float, float, float]:
    """The widest and the tallest tick label ``axis`` will draw, and the height of its offset
    text (e.g. ``1e-3``), in inches: its labels from its locator and formatter, as it draws them."""
    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties

    side = "labelleft" if axis.axis_name == "y" else "labelbottom"
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * (hi - lo)
    width = height = offset = 0.0
    for which, ticker in (("major", axis.major), ("minor", axis.minor)):
        params = axis.get_tick_params(which=which)
        if not params.get(side, True):
            continue
        if params.get("rotation"):
            raise _Unmeasured(axis)
        prop = FontProperties(size=params.get("labelsize", rcParams[f"{axis.axis_name}tick.labelsize"]))
        locs = ticker.locator()
        for loc, label in zip(locs, ticker.formatter.format_ticks(locs), strict=True):
            if lo - eps <= loc <= hi + eps:
                w, h = text_inches(label, prop)
                width, height = max(width, w), max(height, h)
        if which == "major":
            offset = text_inches(ticker.formatter.get_offset(), prop)[1]
    return width, height, offset


def _margins(ax) -> dict[str, float]:
    """Inches the text of ``ax`` takes beyond its box on each side (tick labels, axis labels, titles)."""
    from matplotlib import rcParams

    title = max((text_inches(ax.get_title(loc), ax.title.get_fontproperties())[1]
                 for loc in ("center", "left", "right")), default=0.0)
    title += rcParams["axes.titlepad"] / 72 if title else 0.0
    if not ax.axison:
        return {"left": 0.0, "right": 0.0, "bottom": 0.0, "top": title}
    need = {}
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        width, height, offset = _tick_labels(axis)
        ticks = (rcParams[f"{name}tick.major.size"] + rcParams[f"{name}tick.major.pad"]) / 72
        label = text_inches(axis.label.get_text(), axis.label.get_fontproperties())[1]
        label += axis.labelpad / 72 if label else 0.0
        need[name] = ((width if name == "y" else height) + ticks if width else 0.0) + label, width, height, offset
    (x_out, x_width, _, x_offset), (y_out, _, y_height, y_offset) = need["x"], need["y"]
    return {"left": max(y_out, x_width / 2), "right": x_width / 2, "bottom": x_out + x_offset,
            "top": max(title, y_offset + rcParams["axes.titlepad"] / 72 if y_offset else 0.0, y_height / 2)}
