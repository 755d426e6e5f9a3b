"""Tiles as QuPath detections (GeoJSON, #32): one square per tile in level-0 pixel coordinates,
its class the prediction, its numbers (probabilities, entropy, mutual information, attention)
as measurements, so QuPath's measurement maps colour the slide by them.

The format is QuPath 0.4's GeoJSON import: a ``FeatureCollection`` of ``Feature`` s, each with a
UUID ``id`` (QuPath keeps it; another id it drops), whose ``properties`` hold ``objectType:
"detection"``, ``classification: {name, color}`` and ``measurements`` (an object of name -> number).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_text, json_text

__all__ = ["tiles_geojson", "write_geojson", "COLOURS"]

#: the namespace of the tiles' UUIDs (a tile's id depends on its place in the table, position and side only)
TILES = uuid.UUID("6f1c0c9e-3b1f-5d2a-9a57-2f0e4b1d7c11")

#: classification colours (RGB) by class index, as QuPath shows them
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def tiles_geojson(tiles: pd.DataFrame, side: float, classes: list[str] | None = None) -> dict:
    """A FeatureCollection of ``tiles`` (columns ``x``, ``y``: level-0 top-left; optional
    ``predicted``; every other numeric column but the grid's becomes a measurement), each a
    ``side`` x ``side`` square."""
    skip = {"x", "y", "row", "col", "x_um", "y_um"}
    numbers = [c for c in tiles.columns if c not in skip and pd.api.types.is_numeric_dtype(tiles[c])
               and not pd.api.types.is_bool_dtype(tiles[c])]
    classes = classes or (sorted(tiles["predicted"].astype(str).unique()) if "predicted" in tiles else [])
    features = []
    values = tiles[numbers].to_numpy(np.float64)  # by position: a class name may hold a space ("p_no IDC")
    xy = tiles[["x", "y"]].to_numpy(np.float64)
    predicted = tiles["predicted"].astype(str).tolist() if "predicted" in tiles else None
    for i, ((x, y), row) in enumerate(zip(xy.tolist(), values, strict=True)):
        ring = [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]
        props: dict = {"objectType": "detection",
                       "measurements": {c: float(v) for c, v in zip(numbers, row, strict=True) if np.isfinite(v)}}
        if predicted is not None:
            name = predicted[i]
            k = classes.index(name) if name in classes else 0
            props["classification"] = {"name": name, "color": list(COLOURS[k % len(COLOURS)])}
        features.append({"type": "Feature", "id": str(uuid.uuid5(TILES, f"{i}:{x}:{y}:{side}")),
                         "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, tiles: pd.DataFrame, side: float, classes: list[str] | None = None) -> None:
    """:func:`tiles_geojson` written atomically to ``path`` (``.geojson``)."""
    atomic_write_text(path, json_text(tiles_geojson(tiles, side, classes), indent=None))
