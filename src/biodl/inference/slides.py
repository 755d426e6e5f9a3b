"""Slide inference: a trained patch classifier (an image run) over every tissue tile of a slide.

For each slide: the tissue tiles at the resolution the patch model was trained at (``tile_mpp``
micrometres per pixel, the run's image size in pixels), each tile's class probabilities
(``tiles.csv``), a heat map of the positive class's probability over the thumbnail
(``heatmap.png``, and the grid itself as ``heatmap.npy``: one cell per tile step, NaN where no
tile was kept), the tissue mask (``mask.png``), the slide's scores (``slide.json``: mean, top-k
mean, share of tiles above the threshold) and ``report.html``. The probabilities are those of
``biodl predict`` (the run's predictor, loaded once for every slide: its members, MC-dropout
passes and recalibration; the networks' own kept as ``raw_p_<class>``). Written to a hidden
folder renamed when complete; slides done before are skipped. Over a cohort, ``slides.csv`` and
``index.html`` gather the slides' scores (:func:`write_cohort`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import validation_problem
from ..data.tiles import Tiling, done_before, iter_tiles
from ..data.tissue import mask_overlay
from ..data.wsi import open_slide
from ..errors import ConfigError, DataError, RunDirError
from ..io import atomic_folder, atomic_write_json, atomic_write_text, read_json
from .predictor import Predictor


__all__ = ["heat_overlay", "check_patch_run", "infer_slide", "write_slide_report", "read_cohort", "write_cohort"]


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


def check_patch_run(predictor: Predictor) -> None:
    """A ConfigError unless ``predictor`` is an image run (a patch classifier)."""
    if predictor.task != "image":
        raise ConfigError(predictor.run_dir, f"biodl wsi infer runs a patch classifier (an image run) over slides; "
                                             f"this is a {predictor.task} run")


def infer_slide(predictor: Predictor, path: str | Path, out_dir: str | Path, tile_mpp: float | None,
                min_tissue: float = 0.5, slide_mpp: float | None = None, top_k: int = 10,
                threshold: float = 0.5, pen: bool = False,
                progress: Callable[[int, int], None] | None = None, override_mpp: bool = False,
                viewer: bool = False) -> tuple[Path, dict | None]:
    """Run an image run (``predictor``: :func:`biodl.load`, loaded once for all slides) over one
    slide, tiling at ``tile_mpp`` um/px (default: the run's ``data.mpp``), block by block (memory
    does not grow with the slide); each block is read as the run reads images (its stain
    normalisation, its channels). ``slide_mpp``: the resolution of a slide that records none
    (``override_mpp``: of every slide). Returns (the slide's folder, its scores; None when the
    same run and settings did it before and it was skipped). ``viewer``: also a zoomable viewer of
    the slide with the tiles' heat map (``viewer/index.html``, see :mod:`biodl.report.viewer`)."""
    from PIL import Image

    from ..report.qupath import write_geojson

    check_patch_run(predictor)
    path = Path(path)
    final = Path(out_dir) / path.stem
    pre, classes = predictor.pre, predictor.classes
    size = int(pre.size)
    tile_mpp = tile_mpp if tile_mpp is not None else pre.mpp
    if tile_mpp is None:
        raise RunDirError(predictor.run_dir, "does not record the resolution of its images (data.mpp); give the "
                                             "micrometres per pixel of its patches with --tile-mpp")
    tiling = Tiling(tile_mpp, size, 0, min_tissue, pen=pen)
    settings = {"run": str(predictor.run_dir.resolve()), **tiling.to_dict(), "top_k": top_k, "threshold": threshold,
                "slide_mpp": slide_mpp, "override_mpp": override_mpp}
    if final.is_dir():
        done_before(final / "slide.json", path, settings)
        return final, None
    with open_slide(path, slide_mpp, override_mpp) as slide:
        tiles, tissue, _ = tiling.cut(slide)
        blocks = [predictor.samples(predictor.read(block))  # (M, P, n, K) per block
                  for block in iter_tiles(slide, tiles, size, tile_mpp, progress=progress)]
        samples = np.concatenate(blocks, axis=2) if blocks else np.zeros((len(predictor.members), 1, 0, len(classes)))
        table = predictor.table(samples)  # the columns of biodl predict
        for name in table.columns:
            column = table[name].to_numpy()
            tiles[name] = np.round(column, 6) if column.dtype.kind == "f" else column
        positive = table[f"p_{classes[-1]}"].to_numpy()  # the last class: IDC, tumour, ... (two-class runs)
        top_rows = tiles.iloc[np.argsort(-positive, kind="stable")[:8]]
        top_images = next(iter_tiles(slide, top_rows, size, tile_mpp), np.zeros((0, size, size, 3), np.uint8))
    grid = _heat(tiles, positive)
    top = np.sort(positive)[::-1][:top_k]
    scores = {"slide": str(path.resolve()), "tiles": int(len(tiles)), "tile_mpp": tile_mpp, "tile_size": size,
              "positive_class": classes[-1], "mean": float(positive.mean()) if len(positive) else None,
              f"top{top_k}_mean": float(top.mean()) if len(top) else None,
              "share_above": float((positive >= threshold).mean()) if len(positive) else None, "threshold": threshold,
              "run": str(predictor.run_dir.resolve()), "stain": pre.stain["method"] if pre.stain else None,
              "recalibrated": predictor.recalibrates, "members": len(predictor.members),
              "mc_dropout": samples.shape[1] if samples.shape[1] > 1 else 0}
    with atomic_folder(final, exists="keep") as staging:
        tiles.to_csv(staging / "tiles.csv", index=False)
        write_geojson(staging / "tiles.geojson", tiles, float(tiles.attrs["step"]), classes)  # QuPath detections
        np.save(staging / "heatmap.npy", grid)
        Image.fromarray(heat_overlay(tissue.thumb, grid, tiles.attrs["step"] / tissue.down)).save(
            staging / "heatmap.png")
        Image.fromarray(mask_overlay(tissue.thumb, tissue.mask)).save(staging / "mask.png")
        atomic_write_json(staging / "slide.json", {**scores, "settings": settings})
        if viewer:
            from ..report.viewer import write_viewer

            write_viewer(path, staging / "viewer", heatmap=staging, mpp=slide_mpp)
        write_slide_report(staging, scores, top_rows, top_images)
    return final, scores


def write_slide_report(folder: Path, scores: dict, top_rows, top_images: np.ndarray) -> None:
    """``report.html`` of one slide: its scores, the heat map and tissue mask over the thumbnail,
    and the tiles the model rates highest (with their level-0 coordinates)."""
    import io

    from PIL import Image

    from ..report import html as h

    positive = scores["positive_class"]
    pairs = [("slide", scores["slide"]), ("tissue tiles", scores["tiles"]),
             ("tile", f"{scores['tile_size']} px at {scores['tile_mpp']:g} um/px"),
             ("stain normalisation", scores["stain"] or "none"), ("run", scores["run"]),
             ("probabilities", ("recalibrated" if scores["recalibrated"] else "the model's own")
              + (f", mean of {scores['mc_dropout']} MC-dropout passes" if scores["mc_dropout"] else ""))]
    pairs += [(f"{k.replace('_', ' ')} P({positive})", scores[k]) for k in scores if k.startswith("top") or k == "mean"]
    pairs += [(f"share of tiles with P({positive}) >= {scores['threshold']:g}", scores["share_above"])]
    gallery = []
    for (_, row), img in zip(top_rows.iterrows(), top_images, strict=True):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        gallery.append(f"<figure>{h.png_img(buf.getvalue(), 'tile', scale=max(0.6, 160 / img.shape[1]))}<figcaption>"
                       f"x {int(row['x'])}, y {int(row['y'])}: P = {row[f'p_{positive}']:.3f}</figcaption></figure>")
    sections = [
        h.Section("scores", "Slide scores", h.key_values(pairs)),
        h.Section("heatmap", "Heat map", h.row(
            h.figure(folder / "heatmap.png", f"P({positive}) of each tissue tile over the thumbnail (blue low, red "
                                             "high)"),
            h.figure(folder / "mask.png", "the tissue mask the tiles were chosen on"))),
        h.Section("tiles", f"Tiles rated most {positive}", h.row(*gallery) if gallery else h.para("no tissue tiles")),
    ]
    if (folder / "viewer" / "index.html").is_file():
        sections.insert(2, h.Section("viewer", "Zoomable viewer", h.link("viewer/index.html", "open the slide with the "
                                     "heat map as a layer (works offline)")))
    (folder / "report.html").write_text(h.page(f"Slide {Path(scores['slide']).name}",
                                               "biodl wsi infer: a patch classifier over every tissue tile", sections))


class SlideResult(BaseModel):
    """What ``slide.json`` must hold for a cohort table (more keys may follow)."""

    model_config = ConfigDict(extra="allow")

    slide: str
    tiles: int = Field(ge=0)
    positive_class: str
    mean: float | None


def read_cohort(out_dir: str | Path) -> list[dict]:
    """Every ``<slide>/slide.json`` under ``out_dir``, checked; one that ``biodl wsi infer`` did
    not write (damaged, or a stray file) is a DataError naming it. Called before any slide is
    scored, and again before ``slides.csv`` is written."""
    rows = []
    for f in sorted(Path(out_dir).glob("*/slide.json")):
        data = read_json(f, DataError)
        try:
            SlideResult.model_validate(data)
        except ValidationError as exc:
            raise DataError(f, f"is not a slide result of biodl wsi infer ({validation_problem(exc)}); remove it or "
                               "choose another --out") from None
        rows.append({k: v for k, v in data.items() if k != "settings"})
    return rows


def write_cohort(out_dir: str | Path) -> Path:
    """``slides.csv`` and ``index.html`` in ``out_dir``: one row per slide done (from each
    ``<slide>/slide.json``, see :func:`read_cohort`), linking each slide's report. Returns the CSV."""
    import pandas as pd

    from ..report import html as h

    out_dir = Path(out_dir)
    rows = read_cohort(out_dir)
    table = pd.DataFrame(rows).drop(columns=["run", "stain"], errors="ignore")
    atomic_write_text(out_dir / "slides.csv", table.to_csv(index=False))
    links = "".join(f'<li><a href="{h.esc(Path(r["slide"]).stem)}/report.html">{h.esc(Path(r["slide"]).name)}</a></li>'
                    for r in rows)
    shown = table.assign(slide=[Path(s).name for s in table["slide"]]) if len(table) else table
    atomic_write_text(out_dir / "index.html", h.page("Slides", f"{len(rows)} slides scored by biodl wsi infer",
                                                     [h.Section("slides", "Scores", h.table(shown)),
                                                      h.Section("reports", "Reports", f"<ul>{links}</ul>")]))
    return out_dir / "slides.csv"
