"""What an image path holds: its layout (npz, npy, class folders, patient tree, CSV), and the
side to decode a set of differently sized files at."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..errors import ImageFault
from .images import image_size

__all__ = ["detect_image_layout", "default_size"]

#: files whose sizes :func:`default_size` reads (evenly spaced over the sorted list)
SIZE_SAMPLE = 64


def detect_image_layout(path: Path, layout: str = "auto") -> str:
    """``layout`` unless it is ``auto``: then ``npz`` (a .npz file), ``slides`` (a .csv with a
    ``slide`` column), ``csv`` (another .csv file), ``npy``
    (a folder with X.npy), ``patients`` (folders of numbered label folders) or ``folder``."""
    if layout != "auto":
        return layout
    if path.suffix == ".npz":
        return "npz"
    if path.suffix == ".csv":
        from .slides import is_slide_table

        return "slides" if is_slide_table(path) else "csv"
    if path.is_dir():
        if (path / "X.npy").is_file():
            return "npy"
        subdirs = [p for p in path.iterdir() if p.is_dir()]
        if subdirs and all(any(q.is_dir() and q.name.isdigit() for q in d.iterdir()) for d in subdirs):
            return "patients"
        return "folder"
    raise DataError(path, "cannot tell the layout: expected .npz, .csv, or a folder")


def default_size(files: list[Path], where: Path, cap: int = 224) -> int:
    """The side to decode at when ``data.size`` is not given: the median shorter side of up to
    :data:`SIZE_SAMPLE` files spread over the set, at most ``cap``. Warns when the sampled sizes
    differ by more than a factor of two (every image is resized to one side either way)."""
    picks = np.unique(np.linspace(0, len(files) - 1, min(SIZE_SAMPLE, len(files))).round().astype(int))
    sides = []
    for i in picks:
        try:
            sides.append(min(image_size(files[i])))
        except ImageFault:
            continue  # unreadable files are reported (or skipped) when decoding
    if not sides:
        return cap
    size = min(cap, int(np.median(sides)))
    if max(sides) > 2 * min(sides):
        warnings.warn(f"{where}: image sizes vary widely (shorter side {min(sides)} to {max(sides)} px in "
                      f"{len(sides)} files sampled); all are resized to {size} x {size} (the median, at most {cap}); "
                      "set data.size to choose", stacklevel=2)
    return size
