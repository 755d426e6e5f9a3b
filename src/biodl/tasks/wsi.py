"""Slide inference: a trained patch classifier (an image run) over every tissue tile of a slide.

For each slide: the tissue tiles at the resolution the patch model was trained at (``tile_mpp``
micrometres per pixel, the run's image size in pixels), each tile's class probabilities
(``tiles.csv``), a heat map of the positive class's probability over the thumbnail
(``heatmap.png``, and the grid itself as ``heatmap.npy``: one cell per tile step, NaN where no
tile was kept) and the slide's scores (``slide.json``: mean, top-k mean, share of tiles above
the threshold). Written to a hidden folder renamed when complete; slides done before are
skipped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..data.arrays import ImageDataset, ImageSet
from ..data.wsi import grid_tiles, open_slide, read_tiles
from ..errors import RunDirError


def _heat(tiles, probability: np.ndarray) -> np.ndarray:
    """The slide's whole grid of tiles (``tiles.attrs["grid"]``): each kept tile's probability at
    its cell, NaN elsewhere."""
    grid = np.full(tiles.attrs["grid"], np.nan)
    grid[tiles["row"].to_numpy(), tiles["col"].to_numpy()] = probability
    return grid


def heat_overlay(thumb: np.ndarray, grid: np.ndarray, step_thumb: float) -> np.ndarray:
    """The thumbnail (h, w, 3) with each grid cell painted by its probability (red high, blue low;
    NaN cells left as they are), blended half and half: (h, w, 3) uint8."""
    from matplotlib import colormaps

    h, w = thumb.shape[:2]
    rows = np.minimum((np.arange(h) / step_thumb).astype(int), grid.shape[0] - 1)
    cols = np.minimum((np.arange(w) / step_thumb).astype(int), grid.shape[1] - 1)
    values = grid[np.ix_(rows, cols)] if grid.size else np.full((h, w), np.nan)
    colour = (colormaps["coolwarm"](np.nan_to_num(values))[..., :3] * 255).astype(np.float64)
    painted = np.where(np.isnan(values)[..., None], thumb, 0.5 * thumb + 0.5 * colour)
    return np.clip(np.round(painted), 0, 255).astype(np.uint8)


def infer_slide(run_dir: str | Path, path: str | Path, out_dir: str | Path, tile_mpp: float | None,
                min_tissue: float = 0.5, slide_mpp: float | None = None, top_k: int = 10,
                threshold: float = 0.5, checkpoint: str = "best") -> tuple[Path, dict | None]:
    """Run the image run in ``run_dir`` over one slide, tiling at ``tile_mpp`` um/px (default: the
    run's ``data.mpp``); returns (its folder, its scores; None when it was done before and
    skipped)."""
    from PIL import Image

    from .image import load_run

    path = Path(path)
    final = Path(out_dir) / path.stem
    if final.is_dir():
        return final, None
    _, pre, trainer = load_run(run_dir, checkpoint)
    size, classes = int(pre["size"]), list(pre["classes"])
    tile_mpp = tile_mpp if tile_mpp is not None else pre.get("mpp")
    if tile_mpp is None:
        raise RunDirError(run_dir, "does not record the resolution of its images (data.mpp); give the micrometres "
                                   "per pixel of its patches with --tile-mpp")
    with open_slide(path, slide_mpp) as slide:
        tiles, thumb, _, down = grid_tiles(slide, tile_mpp, size, 0, min_tissue)
        images = read_tiles(slide, tiles, size, tile_mpp)
    if images.shape[-1] != pre["in_chans"]:
        images = images[..., : pre["in_chans"]]
    prob = (trainer.predict(ImageDataset(ImageSet(images, np.zeros(len(images), np.int64), classes))).numpy()
            .astype(np.float64) if len(images) else np.zeros((0, len(classes))))
    positive = prob[:, -1]  # the last class: IDC, tumour, ... (two-class runs)
    for k, c in enumerate(classes):
        tiles[f"p_{c}"] = np.round(prob[:, k], 6)
    grid = _heat(tiles, positive)
    top = np.sort(positive)[::-1][:top_k]
    scores = {"slide": str(path), "tiles": int(len(tiles)), "tile_mpp": tile_mpp, "tile_size": size,
              "positive_class": classes[-1], "mean": float(positive.mean()) if len(positive) else None,
              f"top{top_k}_mean": float(top.mean()) if len(top) else None,
              "share_above": float((positive >= threshold).mean()) if len(positive) else None, "threshold": threshold}
    staging = final.parent / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        tiles.to_csv(staging / "tiles.csv", index=False)
        np.save(staging / "heatmap.npy", grid)
        Image.fromarray(heat_overlay(thumb, grid, tiles.attrs["step"] / down)).save(staging / "heatmap.png")
        (staging / "slide.json").write_text(json.dumps(scores, indent=1))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(final)
    return final, scores
