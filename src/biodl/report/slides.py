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

from ..data.mosaics import COORDINATES, assemble, patch_positions
from ..io import atomic_write

__all__ = ["COORDINATES", "patch_positions", "assemble", "cells_map", "write_slide_maps"]

PANEL = 480  # pixels: the longer side of each panel


def cells_map(values: np.ndarray, xy: np.ndarray, p: int, scale: int, colour) -> np.ndarray:
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
        truth = cells_map(part["label"].to_numpy(), xy, p, scale,
                       lambda v: np.where(v[:, None] == 1, [[214, 39, 40]], [[250, 250, 250]]).astype(np.uint8))
        prob = cells_map(part[f"p_{positive}"].to_numpy(), xy, p, scale,
                      lambda v: (np.asarray(heat(v))[:, :3] * 255).astype(np.uint8))
        gap = np.full((mosaic.shape[0], 8, 3), 255, np.uint8)
        figure = Image.fromarray(np.concatenate([mosaic, gap, truth, gap, prob], axis=1))
        name = f"slide_{re.sub(r'[^A-Za-z0-9_.-]', '_', str(patient))}.png"
        atomic_write(out_dir / name, lambda f, im=figure: im.save(f, format="PNG"))
        written.append(name)
    return written
