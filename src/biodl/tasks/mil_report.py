"""What a MIL run says about its tiles: each test tile's attention (its weight in its bag) and its
own score (the head applied to it alone), ``<prefix>_tiles.csv``; how well attention finds the
positive tiles where tile labels are known (ROC AUC of attention within positive bags, with a
patient-level CI); and per patient a heat map of both on the mosaic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from .. import runs
from ..engine.distributed import is_main_process
from ..evaluation import bootstrap_cis
from ..evaluation.scores import roc_auc
from ..io import atomic_write
from ..report.tables import write_table
from .mil_data import BagLayout

__all__ = ["tile_outputs", "attention_scores", "tile_report", "pool_tiles", "MAP_TEXT", "POOLINGS", "patch_pooling"]

MAP_TEXT = ("Each test patient's tiles at their slide positions: the mosaic, the tile labels (positive red), the "
            "attention each tile got in its bag (relative to its bag's most attended tile; bright high), and each "
            "tile's own probability of the positive class (bright high).")


@torch.no_grad()
def tile_outputs(module: torch.nn.Module, lay: BagLayout, feats: list[np.ndarray], rows: np.ndarray,
                 batch: int = 64) -> pd.DataFrame | None:
    """One row per tile of the bags ``rows``: bag, patient, slide, tile, x, y (a tree's), tile and
    bag label, ``attention`` (sums to 1 over a bag), ``attention_rel`` (x the bag's tile count: 1
    is uniform), ``p_tile_<class>``; None for a model without ``attention``."""
    if not hasattr(module, "attention") or not hasattr(module, "tile_logits"):
        return None
    from ..data.bags import pad_bags

    module.eval()
    device = next(module.parameters()).device
    ids, groups, frames = lay.ids, lay.groups, []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        bags = []
        for b in chunk.tolist():
            f = feats[lay.bag_slide[b]]
            bags.append(torch.from_numpy(np.ascontiguousarray(f[lay.bag_tiles[b]] if len(lay.bag_tiles[b]) else f)))
        x, mask = pad_bags(bags, fill=float("nan"))
        x = x.to(device)
        att = module.attention(x).float().cpu().numpy()
        prob = torch.softmax(module.tile_logits(x).float(), dim=-1).cpu().numpy()
        for i, b in enumerate(chunk.tolist()):
            n, s = int(mask[i].sum()), int(lay.bag_slide[b])
            tiles = lay.bag_tiles[b] if len(lay.bag_tiles[b]) else np.arange(n)
            part = {"bag": ids[b], "patient": groups[b], "slide": lay.slides[s], "tile": tiles,
                    "bag_label": int(lay.labels[b]), "attention": att[i, :n], "attention_rel": att[i, :n] * n}
            if lay.tiles is not None:
                t = lay.tiles[s]
                part.update(x=t.xy[tiles, 0], y=t.xy[tiles, 1], tile_label=t.labels[tiles])
            part.update({f"p_tile_{c}": prob[i, :n, k] for k, c in enumerate(lay.classes)})
            frames.append(pd.DataFrame(part))
    return pd.concat(frames, ignore_index=True)


def attention_scores(tiles: pd.DataFrame, prefix: str, n_boot: int, positive: str) -> dict[str, float]:
    """With tile labels: ``<prefix>/attention_roc_auc`` (relative attention against the tile labels
    within positive bags) and ``<prefix>/tile_roc_auc`` (each tile's own probability of the
    ``positive`` class over all tiles), each with a 95% CI resampling patients."""
    if "tile_label" not in tiles:
        return {}
    out: dict[str, float] = {}
    for key, part, score in (("attention_roc_auc", tiles[tiles["bag_label"] > 0], "attention_rel"),
                             ("tile_roc_auc", tiles, f"p_tile_{positive}")):
        y = (part["tile_label"].to_numpy() > 0).astype(np.int64)
        s = part[score].to_numpy(np.float64)[:, None]

        def auc(yy: np.ndarray, ss: np.ndarray, key: str = key) -> dict[str, float]:
            return {key: roc_auc(yy > 0, ss[:, 0])}

        out[f"{prefix}/{key}"] = auc(y, s)[key]
        lo, hi = bootstrap_cis(y, s, auc, n_boot, seed=0, groups=part["patient"].to_numpy())[key]
        out[f"{prefix}/{key}_ci_low"], out[f"{prefix}/{key}_ci_high"] = lo, hi
    out[f"{prefix}/positive_bag_tiles"] = float((tiles["bag_label"] > 0).sum())
    return out


def _pixels(files: list[Path], p: int) -> np.ndarray:
    """(N, p, p, 3) uint8 tiles, smaller ones padded with white (edge tiles)."""
    from PIL import Image

    out = np.full((len(files), p, p, 3), 255, np.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            a = np.asarray(im.convert("RGB"))[:p, :p]
        out[i, : a.shape[0], : a.shape[1]] = a
    return out


def write_maps(out_dir: Path, tiles: pd.DataFrame, lay: BagLayout | None, prefix: str, positive: str,
               max_patients: int = 50) -> list[str]:
    """``<prefix>_attention_<patient>.png`` per patient of a tree's tiles table: mosaic (with
    ``lay``), labels, relative attention (per bag, to its maximum), tile probability."""
    from matplotlib import colormaps
    from PIL import Image

    from ..report.slides import PANEL, assemble, cells_map

    if "x" not in tiles:
        return []
    def colour(name: str):
        return lambda v: (np.asarray(colormaps[name](v))[:, :3] * 255).astype(np.uint8)

    def red(v: np.ndarray) -> np.ndarray:
        return np.where(v[:, None] > 0, [[214, 39, 40]], [[250, 250, 250]]).astype(np.uint8)

    written = []
    for patient, part in list(tiles.groupby("patient", sort=True))[:max_patients]:
        xy, p = part[["x", "y"]].to_numpy(np.int64), max(lay.tile if lay else 0, 1)
        extent = int((xy.max(axis=0) - xy.min(axis=0) + p).max())
        scale = max(1, int(np.ceil(extent / PANEL)))
        att = part["attention"] / part.groupby("bag")["attention"].transform("max")
        panels = [cells_map(part["tile_label"].to_numpy(), xy, p, scale, red),
                  cells_map(att.to_numpy(), xy, p, scale, colour("viridis")),
                  cells_map(part[f"p_tile_{positive}"].to_numpy(), xy, p, scale, colour("magma"))]
        if lay is not None and lay.tiles is not None:
            slide = lay.tiles[lay.slides.index(str(part["slide"].iloc[0]))]
            panels.insert(0, assemble(_pixels([slide.files[i] for i in part["tile"]], p), xy, scale))
        gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
        strip = np.concatenate([x for panel in panels for x in (panel, gap)][:-1], axis=1)
        name = f"{prefix}_attention_{re.sub(r'[^A-Za-z0-9_.-]', '_', str(patient))}.png"
        atomic_write(out_dir / name, lambda f, im=Image.fromarray(strip): im.save(f, format="PNG"))
        written.append(name)
    return written


def tile_report(module: torch.nn.Module, lay: BagLayout, feats: list[np.ndarray], rows: np.ndarray, prefix: str,
                out_dir: Path, n_boot: int, mpp: float | None = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """``<prefix>_tiles.csv``, the attention metrics and the heat maps of the bags ``rows``
    (rank 0 writes; with the tiles' ``mpp``, a zoomable viewer of each patient's mosaic);
    -> (metrics, report sections)."""
    tiles = tile_outputs(module, lay, feats, rows)
    if tiles is None or not is_main_process():
        return {}, []
    atomic_write(out_dir / f"{prefix}_tiles.csv", lambda f: tiles.to_csv(f, index=False))
    metrics = attention_scores(tiles, prefix, n_boot, lay.classes[-1])
    return metrics, _sections(out_dir, tiles, metrics, lay, prefix, mpp)


def _sections(out_dir: Path, tiles: pd.DataFrame, metrics: dict[str, float], lay: BagLayout | None,
              prefix: str, mpp: float | None = None) -> list[dict[str, Any]]:
    rows = [{"measure": what, "value": metrics.get(f"{prefix}/{key}"), "95% CI (patients)":
             f"[{metrics[f'{prefix}/{key}_ci_low']:.3f}, {metrics[f'{prefix}/{key}_ci_high']:.3f}]"
             if metrics.get(f"{prefix}/{key}_ci_low") is not None else ""}
            for key, what in (("attention_roc_auc", "attention ROC AUC for positive tiles, within positive bags"),
                              ("tile_roc_auc", "tile-score ROC AUC, all tiles")) if f"{prefix}/{key}" in metrics]
    items = []
    if rows:
        write_table(pd.DataFrame(rows), out_dir / f"{prefix}_attention", "Where attention goes")
        items.append(f"{prefix}_attention")
    items += write_maps(out_dir, tiles, lay, prefix, lay.classes[-1] if lay else positive_class(tiles))
    if "x" in tiles and lay is not None:
        write_qupath(out_dir / f"{prefix}_qupath", tiles, lay.tile)
        if mpp is not None and lay.tiles is not None:
            items += write_viewers(out_dir / f"{prefix}_viewers", tiles, lay, mpp)
    return [{"title": "Attention", "text": MAP_TEXT, "items": items}] if items else []


def write_viewers(folder: Path, tiles: pd.DataFrame, lay: BagLayout, mpp: float) -> list[str]:
    """``<folder>/<slide>/index.html`` per slide of a tree's tiles table: the mosaic in the zoomable
    viewer, each tile's probability as the heat map, attention in the click readout. Returns the
    pages (relative to ``folder``'s parent)."""
    from ..io import atomic_folder
    from ..report.viewer import write_viewer

    pages = []
    with atomic_folder(folder, exists="replace") as tmp:
        tiles.to_csv(tmp / "tiles.csv", index=False)
        for slide in sorted(tiles["slide"].astype(str).unique()):
            t = lay.tiles[lay.slides.index(slide)]
            source = t.files[0].parent.parent if t.files[0].parent.name.isdigit() else t.files[0].parent
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", slide)
            write_viewer(source, tmp / name, heatmap=tmp / "tiles.csv", mpp=mpp)
            pages.append(f"{folder.name}/{name}/index.html")
    return pages


def write_qupath(folder: Path, tiles: pd.DataFrame, side: int) -> None:
    """``<slide>.geojson`` per slide: its tiles as QuPath detections, with attention (raw and
    relative), each tile's probabilities and label as measurements (level-0 squares of ``side``)."""
    from ..io import atomic_folder
    from ..report.qupath import write_geojson

    keep = ["x", "y", "attention", "attention_rel", "tile_label",
            *[c for c in tiles.columns if c.startswith("p_tile_")]]
    with atomic_folder(folder, exists="replace") as tmp:
        for slide, part in tiles.groupby("slide", sort=True):
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(slide))
            write_geojson(tmp / f"{name}.geojson", part[[c for c in keep if c in part]].reset_index(drop=True), side)


def pool_tiles(run_dir: Path, config: BaseModel, mpp: float | None = None
               ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """A k-fold parent: its folds' test tiles in one ``test_tiles.csv`` (with each tile's fold),
    the pooled attention metrics and the maps of every patient, each by the fold that tested it."""
    from .mil_data import layout

    frames = []
    for k in range(config.data.folds):
        found = runs.fold_dir(run_dir, k) / "test_tiles.csv"
        if found.is_file():
            frames.append(pd.read_csv(found, dtype={"patient": str, "slide": str, "bag": str}).assign(fold=k + 1))
    if not frames:
        return {}, []
    tiles = pd.concat(frames, ignore_index=True)
    atomic_write(run_dir / "test_tiles.csv", lambda f: tiles.to_csv(f, index=False))
    metrics = attention_scores(tiles, "test", config.n_boot, positive_class(tiles))
    lay = layout(config) if "x" in tiles else None
    return metrics, _sections(run_dir, tiles, metrics, lay, "test", mpp)


def positive_class(tiles: pd.DataFrame) -> str:
    """The last class of a tiles table (its ``p_tile_`` columns): the positive one of two."""
    return [c[7:] for c in tiles.columns if c.startswith("p_tile_")][-1]


#: how a patch model's tile probabilities become a bag's score (the baselines MIL is held against)
POOLINGS = {"mean": lambda p: float(np.mean(p)), "max": lambda p: float(np.max(p)),
            "top-3 mean": lambda p: float(np.mean(np.sort(p)[-3:]))}


def patch_pooling(lay: BagLayout, predictions: pd.DataFrame, positive: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A patch model's out-of-fold tile probabilities (its ``test_predictions.csv``: ``patient``,
    ``source``, ``p_<positive>``) pooled over each bag of a tree's layout: (the bags whose every
    tile has one, {pooling: (B',) bag scores}) for each of :data:`POOLINGS`."""
    prob = {(str(p), Path(s).name): v for p, s, v in zip(predictions["patient"].astype(str), predictions["source"],
                                                         predictions[f"p_{positive}"].to_numpy(np.float64),
                                                         strict=True)}
    rows, scores = [], {name: [] for name in POOLINGS}
    for b in range(len(lay.labels)):
        t = lay.tiles[lay.bag_slide[b]]
        found = [prob.get((t.name, t.files[i].name)) for i in lay.bag_tiles[b]]
        if any(v is None for v in found):
            continue
        rows.append(b)
        for name, pool in POOLINGS.items():
            scores[name].append(pool(np.asarray(found)))
    return np.asarray(rows, np.int64), {k: np.asarray(v) for k, v in scores.items()}
