"""Patient mosaics: tiles cut from a slide put back at their positions (#32).

Patch sets cut from whole slides often keep each patch's position in its file name (the Kaggle
IDC set: ``<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<C>.png``, X and Y the top-left pixel at
level 0). :func:`patient_tiles` lists such a tree without decoding it: per patient, its tile files
(in name order), their labels and positions; :func:`assemble` draws a mosaic from the pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .folders import EXTENSIONS, image_paths

__all__ = ["COORDINATES", "patch_positions", "assemble", "PatientTiles", "patient_tiles"]

#: the default ``data.coordinates`` pattern: Kaggle IDC names, ``..._x<X>_y<Y>_...``
COORDINATES = r"_x(?P<x>\d+)_y(?P<y>\d+)"


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


@dataclass
class PatientTiles:
    """One patient's (or slide's) tiles: ``files`` (N, in name order), ``labels`` (N,) from their
    class folders, ``xy`` (N, 2) level-0 top-left positions from their names."""

    name: str
    files: list[Path]
    labels: np.ndarray
    xy: np.ndarray


def patient_tiles(root: str | Path, pattern: str = COORDINATES) -> list[PatientTiles]:
    """Every patient of ``root/<patient>/<label>/<tile>`` (labels 0, 1, ...), sorted by name. A
    folder that is not a patient tree, a patient without tiles, a tile name without its position,
    and two tiles at one position are DataErrors naming the place."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "no such folder (expected <patient>/<label>/<tile images>)")
    out = []
    for patient in sorted(p for p in root.iterdir() if p.is_dir()):
        files, labels = [], []
        for label_dir in sorted(p for p in patient.iterdir() if p.is_dir()):
            if not label_dir.name.isdigit():
                raise DataError(label_dir, "expected a numeric label folder (0, 1, ...) inside each patient folder")
            found = image_paths(label_dir, extensions=EXTENSIONS)
            files += found
            labels += [int(label_dir.name)] * len(found)
        if not files:
            raise DataError(patient, "a patient folder with no tiles (expected <patient>/<label>/<tile images>)")
        order = sorted(range(len(files)), key=lambda i: files[i].name)
        files, labels = [files[i] for i in order], np.asarray(labels, np.int64)[order]
        xy = patch_positions([f.name for f in files], pattern)
        if xy is None:
            bad = next(f for f in files if not re.search(pattern, f.name))
            raise DataError(bad, "a tile name without its position (..._x<X>_y<Y>...)")
        _, first, counts = np.unique(xy, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            at = xy[first[np.argmax(counts > 1)]]
            raise DataError(patient, f"two tiles at one position (x {at[0]}, y {at[1]}); each tile needs its own")
        out.append(PatientTiles(patient.name, files, labels, xy))
    if not out:
        raise DataError(root, "no patient folders (expected <patient>/<label>/<tile images>)")
    return out
