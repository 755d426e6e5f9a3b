"""Slide maps: patches put back where they were cut from their slide.

Patch sets cut from whole slides often keep each patch's position in its file name (the Kaggle
IDC set: ``<patient>_idx5_x<X>_y<Y>_class<C>.png``, X and Y the top-left pixel). For every
patient, :func:`write_slide_maps` draws three panels side by side: the slide mosaic, the
ground-truth map (class 1 in red) and the predicted probability of class 1 as a heat map.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write

__all__ = ["COORDINATES", "patch_positions", "assemble", "write_slide_maps"]

#: the default ``data.coordinates`` pattern: Kaggle IDC names, ``..._x<X>_y<Y>_...``
COORDINATES = r"_x(?P<x>\d+)_y(?P<y>\d+)"
PANEL = 480  # pixels: the longer side of each panel


def patch_positions(sources: list[str], pattern: str = COORDINATES) -> np.ndarray | None:
    """(N, 2) top-left (x, y) of each patch from its file name, or None unless every name matches."""
    rx = re.compile(pattern)
    found = [rx.search(Path(s).name) for s in sources]
    if not found or any(m is None for m in found):
        return None
    return np.array([[int(m.group("x")), int(m.group("y"))] for m in found], dtype=np.int64)


def assemble(patches: np.ndarray, xy: np.ndarray, scale: int = 1, fill: int = 255) -> np.ndarray:
    """The canvas (H, W, C) uint8 holding (N, P, P, C) ``patches`` at their top-left slide
    positions ``xy`` (N, 2), every length divided by ``scale`` (an integer; patches are
    subsampled, so scale 1 gives the pixels back exactly); empty space is ``fill``."""
    p = patches.shape[1]
    origin = xy.min(axis=0)
    w, h = (xy.max(axis=0) - origin + p + scale - 1) // scale
    canvas = np.full((h, w, patches.shape[-1]), fill, np.uint8)
    small = patches[:, ::scale, ::scale]
    for (x, y), patch in zip((xy - origin) // scale, small, strict=True):
        ph, pw = min(patch.shape[0], h - y), min(patch.shape[1], w - x)
        canvas[y:y + ph, x:x + pw] = patch[:ph, :pw]
    return canvas


def _cells(values: np.ndarray, xy: np.ndarray, p: int, scale: int, colour) -> np.ndarray:
    """A map drawing each patch's cell in ``colour(value)`` (an (N, 3) uint8 array)."""
    n = len(values)
    blocks = np.broadcast_to(colour(values)[:, None, None, :], (n, p, p, 3))
    return assemble(np.ascontiguousarray(blocks), xy, scale, fill=235)


def write_slide_maps(out_dir: Path, images, pred: pd.DataFrame, positive: str, pattern: str = COORDINATES,
                     max_patients: int = 50) -> list[str]:
    """``slide_<patient>.png`` for every patient in ``pred`` (a predictions table with ``row``,
    ``source``, ``patient``, ``label`` and ``p_<positive>``), drawing the patches ``images[row]``
    ((N, P, P, C) uint8 rows, e.g. the decoded cache). Returns the file names (none when the
    names carry no positions or the table no patients)."""
    from matplotlib import colormaps
    from PIL import Image

    if "patient" not in pred or "source" not in pred:
        return []
    heat, written = colormaps["magma"], []
    for patient, part in list(pred.groupby("patient", sort=True))[:max_patients]:
        xy = patch_positions(part["source"].tolist(), pattern)
        if xy is None:
            return written
        patches = np.asarray(images[part["row"].to_numpy()])
        p = patches.shape[1]
        extent = int((xy.max(axis=0) - xy.min(axis=0) + p).max())
        scale = max(1, int(np.ceil(extent / PANEL)))
        mosaic = assemble(patches[..., :3] if patches.shape[-1] >= 3 else np.repeat(patches, 3, -1), xy, scale)
        truth = _cells(part["label"].to_numpy(), xy, p, scale,
                       lambda v: np.where(v[:, None] == 1, [[214, 39, 40]], [[250, 250, 250]]).astype(np.uint8))
        prob = _cells(part[f"p_{positive}"].to_numpy(), xy, p, scale,
                      lambda v: (np.asarray(heat(v))[:, :3] * 255).astype(np.uint8))
        gap = np.full((mosaic.shape[0], 8, 3), 255, np.uint8)
        figure = Image.fromarray(np.concatenate([mosaic, gap, truth, gap, prob], axis=1))
        name = f"slide_{re.sub(r'[^A-Za-z0-9_.-]', '_', str(patient))}.png"
        atomic_write(out_dir / name, lambda f, im=figure: im.save(f, format="PNG"))
        written.append(name)
    return written
