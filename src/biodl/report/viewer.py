"""A zoomable slide viewer that works offline (#32): a static Deep Zoom pyramid of the slide
(OpenSlide's ``DeepZoomGenerator``), the vendored OpenSeadragon, and a heat-map layer of tile
scores aligned to level-0 coordinates, in one folder that opens from ``file://``.

``index.html`` inlines everything it needs to know (the pyramid's descriptor, the tiles'
numbers), so the browser asks for nothing but the folder's own files: the pyramid's JPEG tiles,
``heatmap.png`` (one pixel per tile, drawn without smoothing) and ``openseadragon.min.js``
(BSD-3, its licence beside it). Controls: the heat map's opacity and visibility, a colour bar of
the probability, a scale bar from the slide's micrometres per pixel, and a click readout (the
level-0 position, and the tile's probability, attention and prediction set).

The slide is a whole-slide file (SVS, NDPI, ..., or a plain image) or a folder of one patient's
tiles whose names carry their positions (``..._x<X>_y<Y>...``), put back together as a mosaic.
The heat map is a CSV (``x``, ``y`` level-0 top-left, a probability column ``probability`` or
``p_<class>``, optional ``attention``, ``set``, ``size``), a ``biodl wsi infer`` slide folder
(its ``tiles.csv``) or a MIL run (its ``test_tiles.csv``, this slide's rows).
"""

from __future__ import annotations

import html
import json
import shutil
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["ASSETS", "heat_tiles", "write_viewer", "COLOURMAP"]

ASSETS = Path(__file__).resolve().parent / "assets" / "openseadragon"
COLOURMAP = "magma"
TILE, OVERLAP, QUALITY = 254, 1, 85


def _mosaic(folder: Path) -> tuple[Any, tuple[int, int]]:
    """A patient folder's tiles as one image (an ``openslide.ImageSlide``) and its level-0 origin."""
    from openslide import ImageSlide
    from PIL import Image

    from ..data.folders import image_paths
    from ..data.mosaics import assemble, patch_positions

    files = image_paths(folder, recursive=True)
    if not files:
        raise DataError(folder, "holds no tile images")
    xy = patch_positions([f.name for f in files])
    if xy is None:
        raise DataError(folder, "a tile name without its position (..._x<X>_y<Y>...); a folder is viewed as the "
                                "mosaic of its tiles")
    tiles = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    p = max(max(t.shape[:2]) for t in tiles)
    pixels = np.full((len(tiles), p, p, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        pixels[i, : t.shape[0], : t.shape[1]] = t
    return ImageSlide(Image.fromarray(assemble(pixels, xy))), (int(xy[:, 0].min()), int(xy[:, 1].min()))


def _open(path: Path, mpp: float | None) -> tuple[Any, tuple[int, int], float]:
    """(an OpenSlide-like object for the pyramid, the level-0 origin of its pixel (0, 0), mpp)."""
    from ..data.wsi import check_mpp, open_slide

    if path.is_dir():
        osr, origin = _mosaic(path)
        if mpp is None:
            raise DataError(path, "a mosaic of tiles records no resolution (microns per pixel); give it with --mpp")
        return osr, origin, check_mpp(mpp, "--mpp")
    slide = open_slide(path, mpp)
    found = slide.need_mpp()
    if slide.vendor == "image":
        from openslide import ImageSlide
        from PIL import Image

        return ImageSlide(Image.fromarray(slide._handle)), (0, 0), found
    return slide._handle, (0, 0), found


def heat_tiles(source: Path, slide: str) -> tuple[pd.DataFrame, Path]:
    """The tiles of the heat map for ``slide`` (its name): columns x, y, probability and, where
    known, attention (relative to its bag's maximum), set, size, row, col; and the file they came from."""
    from ..data.tabular import read_csv

    if source.is_dir() and (source / "tiles.csv").is_file():
        csv = source / "tiles.csv"
    elif source.is_dir() and (source / "test_tiles.csv").is_file():
        csv = source / "test_tiles.csv"
    elif source.is_file():
        csv = source
    else:
        raise DataError(source, "is not a heat map: give a CSV (x, y, probability), a biodl wsi infer slide folder "
                                "or a MIL run")
    tiles = read_csv(csv)
    if "slide" in tiles.columns:  # a MIL run's tiles: this slide's
        tiles = tiles[tiles["slide"].astype(str) == slide]
        if tiles.empty:
            raise DataError(csv, f"holds no tile of slide {slide!r}")
    prob = "probability" if "probability" in tiles.columns else next(
        (c for c in reversed(tiles.columns) if c.startswith(("p_tile_", "p_"))), None)
    if prob is None or not {"x", "y"} <= set(tiles.columns):
        raise DataError(csv, "a heat map needs columns x, y (level-0 top-left) and probability (or p_<class>)")
    out = pd.DataFrame({k: pd.to_numeric(tiles[c], errors="coerce") for k, c in (("x", "x"), ("y", "y"),
                                                                                   ("probability", prob))})
    if out.isna().any().any() or not out["probability"].between(0, 1).all():
        raise DataError(csv, f"x, y and {prob} must be numbers, the probability in [0, 1]")
    if "attention" in tiles.columns:
        att = pd.to_numeric(tiles["attention"], errors="coerce")
        out["attention"] = att / att.groupby(tiles["bag"]).transform("max") if "bag" in tiles.columns else att
    for extra in ("set", "size", "row", "col"):
        if extra in tiles.columns:
            out[extra] = tiles[extra].to_numpy()
    return out.reset_index(drop=True), csv


def _grid(tiles: pd.DataFrame, where: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(col, row) of each tile on its grid and the grid's step (a tile's side, level-0 px):
    from ``row``/``col`` columns where the table has them (``biodl wsi infer``'s, whose step need not
    be a whole number of pixels), else from the positions' common step (or a ``size`` column)."""
    x, y = tiles["x"].to_numpy(np.float64), tiles["y"].to_numpy(np.float64)
    size = float(pd.to_numeric(tiles["size"]).iloc[0]) if "size" in tiles else None
    if {"row", "col"} <= set(tiles.columns):
        col, row = (pd.to_numeric(tiles[c]).to_numpy(np.int64) for c in ("col", "row"))
        index, place = np.r_[col, row].astype(np.float64), np.r_[x, y]
        spread = ((index - index.mean()) ** 2).sum()
        if size is None and spread == 0:
            raise DataError(where, "one tile alone: give its side with a size column")
        side = size or float(((index - index.mean()) * (place - place.mean())).sum() / spread)
        return col, row, side
    step = 0
    for v in np.r_[x - x.min(), y - y.min()].astype(np.int64).tolist():
        step = gcd(step, int(v))
    side = size or step
    if not side:
        raise DataError(where, "one tile alone: give its side with a size column")
    return ((x - x.min()) // side).astype(np.int64), ((y - y.min()) // side).astype(np.int64), float(side)


def _heat_layer(tiles: pd.DataFrame, where: Path, size: tuple[int, int], origin: tuple[int, int],
                out: Path) -> dict[str, Any]:
    """``heatmap.png`` (one RGBA pixel per tile cell) and what the page needs to place and read it."""
    from matplotlib import colormaps
    from PIL import Image

    tiles = tiles.assign(x=tiles["x"] - origin[0], y=tiles["y"] - origin[1])
    x, y = tiles["x"].to_numpy(np.float64), tiles["y"].to_numpy(np.float64)
    outside = (x < 0) | (y < 0) | (x >= size[0]) | (y >= size[1])
    if outside.any():
        i = int(np.argmax(outside))
        raise DataError(where, f"tile at x {x[i] + origin[0]:g}, y {y[i] + origin[1]:g} falls outside the slide "
                               f"({size[0]} x {size[1]} px from x {origin[0]}, y {origin[1]})")
    col, row, side = _grid(tiles, where)
    col, row = col - col.min(), row - row.min()  # the heat map covers the tiles' grid, from its first cell
    cols, rows = int(col.max()) + 1, int(row.max()) + 1
    ox, oy = float(np.mean(x - col * side)), float(np.mean(y - row * side))
    rgba = np.zeros((rows, cols, 4), np.uint8)
    rgba[row, col, :3] = (np.asarray(colormaps[COLOURMAP](tiles["probability"].to_numpy()))[:, :3] * 255).round()
    rgba[row, col, 3] = 255
    Image.fromarray(rgba, "RGBA").save(out / "heatmap.png")
    cells = {f"{c},{r}": [round(float(p), 4), None if "attention" not in tiles else round(float(a), 4),
                          None if "set" not in tiles else str(s)]
             for c, r, p, a, s in zip(col.tolist(), row.tolist(), tiles["probability"],
                                      tiles.get("attention", tiles["probability"]), tiles.get("set", tiles["x"]),
                                      strict=True)}
    stops = [[round(v, 2), "#%02x%02x%02x" % tuple(int(round(c * 255)) for c in colormaps[COLOURMAP](v)[:3])]
             for v in np.linspace(0, 1, 11)]
    return {"x": ox, "y": oy, "side": side, "cols": cols, "rows": rows, "cells": cells, "stops": stops,
            "source": where.name}


def write_viewer(slide: str | Path, out: str | Path, heatmap: str | Path | None = None, mpp: float | None = None,
                 overwrite: bool = False, progress=None) -> Path:
    """``out/index.html`` with the slide's Deep Zoom pyramid (and the heat map), written whole
    (a temporary folder renamed; nothing is left on a fault). Returns ``out``."""
    from openslide.deepzoom import DeepZoomGenerator
    from PIL import Image  # noqa: F401 - the tiles are PIL images

    from ..io import atomic_folder

    slide, out = Path(slide), Path(out)
    osr, origin, found_mpp = _open(slide, mpp)
    name = slide.name if slide.is_dir() else slide.stem
    heat = heat_tiles(Path(heatmap), name) if heatmap is not None else None
    with atomic_folder(out, exists="replace" if overwrite else "error") as tmp:
        layer = _heat_layer(heat[0], heat[1], osr.dimensions, origin, tmp) if heat is not None else None
        dz = DeepZoomGenerator(osr, tile_size=TILE, overlap=OVERLAP, limit_bounds=False)
        total = sum(c * r for c, r in dz.level_tiles)
        done = 0
        for level in range(dz.level_count):
            folder = tmp / "slide_files" / str(level)
            folder.mkdir(parents=True)
            cols, rows = dz.level_tiles[level]
            for c in range(cols):
                for r in range(rows):
                    dz.get_tile(level, (c, r)).convert("RGB").save(folder / f"{c}_{r}.jpeg", quality=QUALITY)
            done += cols * rows
            if progress is not None:
                progress(done, total)
        for f in ("openseadragon.min.js", "LICENSE.txt"):
            shutil.copy(ASSETS / f, tmp / ("OPENSEADRAGON_LICENSE.txt" if f == "LICENSE.txt" else f))
        config = {"width": osr.dimensions[0], "height": osr.dimensions[1], "tile": TILE, "overlap": OVERLAP,
                  "mpp": found_mpp, "origin": list(origin), "heat": layer, "name": name}
        (tmp / "index.html").write_text(_page(config), encoding="utf-8")
    return out


def _page(config: dict[str, Any]) -> str:
    data = json.dumps(config, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"{config['name']} - biodl slide viewer")
    return PAGE.replace("__TITLE__", title).replace("__CONFIG__", data)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
 body{margin:0;font:13px system-ui,sans-serif;background:#222;color:#eee}
 #view{position:absolute;top:44px;bottom:0;left:0;right:0;background:#fff}
 #bar{height:44px;display:flex;align-items:center;gap:14px;padding:0 10px}
 #colourbar{width:160px;height:12px;border:1px solid #999}
 #scale{position:absolute;bottom:12px;left:12px;background:rgba(255,255,255,.85);color:#000;padding:2px 4px;
  border-bottom:3px solid #000;z-index:5;text-align:center}
 #readout{position:absolute;bottom:12px;right:12px;background:rgba(0,0,0,.75);padding:4px 8px;z-index:5;
  white-space:pre}
</style></head><body>
<div id="bar"><b id="name"></b>
 <label id="heatcontrols"><input type="checkbox" id="show" checked> heat map</label>
 <label>opacity <input type="range" id="opacity" min="0" max="1" step="0.05" value="0.5"></label>
 <span>0</span><div id="colourbar"></div><span>1 probability</span></div>
<div id="view"></div><div id="scale"></div><div id="readout">click a tile</div>
<script src="openseadragon.min.js"></script>
<script>
const C = __CONFIG__;
document.getElementById("name").textContent = C.name;
const viewer = OpenSeadragon({id: "view", prefixUrl: "", showNavigationControl: false, drawer: "canvas",
  imageSmoothingEnabled: false, crossOriginPolicy: false, loadTilesWithAjax: false, maxZoomPixelRatio: 4,
  tileSources: {Image: {xmlns: "http://schemas.microsoft.com/deepzoom/2008", Url: "slide_files/", Format: "jpeg",
    Overlap: String(C.overlap), TileSize: String(C.tile), Size: {Width: String(C.width), Height: String(C.height)}}}});
let heat = null;
const H = C.heat;
if (H) {
  viewer.addHandler("open", () => {
    viewer.addTiledImage({tileSource: {type: "image", url: "heatmap.png", buildPyramid: false},
      x: H.x / C.width, y: H.y / C.width, width: H.cols * H.side / C.width, opacity: 0.5,
      success: e => { heat = e.item; }});
  });
  document.getElementById("colourbar").style.background =
    "linear-gradient(to right," + H.stops.map(s => s[1] + " " + (100 * s[0]) + "%").join(",") + ")";
} else {
  document.getElementById("heatcontrols").style.display = "none";
}
const opacity = document.getElementById("opacity"), show = document.getElementById("show");
function restyle() { if (heat) heat.setOpacity(show.checked ? Number(opacity.value) : 0); }
opacity.addEventListener("input", restyle); show.addEventListener("change", restyle);
function scalebar() {
  const item = viewer.world.getItemAt(0); if (!item) return;
  const a = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
  const b = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(1000, 0));
  const pxPerUm = (b.x - a.x) / 1000 / C.mpp;
  let um = 1;
  for (const s of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]) if (s * pxPerUm <= 150) um = s;
  const bar = document.getElementById("scale");
  bar.style.width = (um * pxPerUm) + "px"; bar.textContent = um >= 1000 ? (um / 1000) + " mm" : um + " \\u00b5m";
}
viewer.addHandler("animation", scalebar); viewer.addHandler("open", scalebar);
viewer.addHandler("canvas-click", e => {
  if (!e.quick) return;
  const item = viewer.world.getItemAt(0);
  const p = item.viewerElementToImageCoordinates(e.position);
  const x = Math.floor(p.x) + C.origin[0], y = Math.floor(p.y) + C.origin[1];
  let text = "x " + x + ", y " + y + " (level 0)";
  if (H) {
    const cell = H.cells[Math.floor((p.x - H.x) / H.side) + "," + Math.floor((p.y - H.y) / H.side)];
    if (cell) {
      text += "\\nprobability " + cell[0].toFixed(3);
      if (cell[1] !== null) text += "\\nattention " + cell[1].toFixed(3);
      if (cell[2] !== null) text += "\\nset " + cell[2];
    } else text += "\\nno tile here";
  }
  document.getElementById("readout").textContent = text;
});
</script></body></html>
"""
