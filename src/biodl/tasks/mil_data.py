"""The data of a MIL run (``task: mil``): which tiles form each bag and its label (a patient
tree's mosaics cut into windows or taken whole, or a slide table over a feature cache), the
bags' features from the cache (extracted first where missing), and the split by patient.

A k-fold extractor (e.g. a ``biodl run histopathology`` folder) gives fold k's features by fold
k's network, and fold k of the MIL run trains, validates and tests on the patients that network
did: no test patient's tiles ever taught the features a thing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from .. import runs
from ..config import MilRunConfig, Strict
from ..data.bags import BagSet, bag_labels, window_bags
from ..data.features import FeatureCache, Provenance, extract
from ..data.mosaics import PatientTiles, patient_tiles
from ..data.splits import kfold_splits
from ..data.tabular import read_csv
from ..datasets import embedded_path
from ..errors import ConfigError, DataError
from ..io import read_json

__all__ = ["PRESETS", "PreprocessFile", "BagLayout", "layout", "extractor_folds", "extractor_of", "features",
           "split", "bag_set", "cache_root"]

#: embedded data sets: their tree and class names
PRESETS: dict[str, dict[str, Any]] = {"idc": {"classes": ["no IDC", "IDC"]}}


class PreprocessFile(Strict):
    """``preprocess.json`` of a MIL run: the classes, how bags are made, and (a single run) the
    feature dimension, the features' provenance and the extractor run that makes them."""

    classes: list[str] = Field(min_length=2)
    source: Literal["tree", "table"]
    bags: Literal["window", "slide"]
    window: int = Field(ge=1)
    min_tiles: int = Field(ge=1)
    tile: int = Field(0, ge=0, description="a tile's side in level-0 pixels (a patient tree's)")
    dim: int = Field(0, ge=0, description="features a tile (a k-fold parent: 0, its folds' own)")
    provenance: dict[str, Any] | None = None
    extractor: str | None = Field(None, description="the image run whose network makes the features")
    cache: str | None = Field(None, description="the feature cache the run filled (new tiles' features go there)")
    folds: int | None = Field(None, ge=2)


@dataclass
class BagLayout:
    """Bags without features: per slide (or patient mosaic) its name, patient, tiles (a tree:
    files, labels, positions; a table: its cache entry); per bag its slide, its tiles (indices
    into the slide's) and label."""

    slides: list[str]
    patients: list[str]
    tiles: list[PatientTiles] | None
    entries: list[str] | None
    bag_slide: np.ndarray
    bag_tiles: list[np.ndarray]
    labels: np.ndarray
    classes: list[str]
    tile: int
    where: Path

    @property
    def groups(self) -> np.ndarray:
        """(B,) each bag's patient."""
        return np.asarray(self.patients, dtype=object)[self.bag_slide].astype(str)

    @property
    def ids(self) -> list[str]:
        """(B,) each bag's name: its slide, and for windows ``/<bag number in the slide>``."""
        if len(self.bag_slide) == len(self.slides):
            return list(self.slides)
        counter: dict[int, int] = {}
        out = []
        for s in self.bag_slide.tolist():
            out.append(f"{self.slides[s]}/{counter.get(s, 0)}")
            counter[s] = counter.get(s, 0) + 1
        return out


def cache_root(config: MilRunConfig) -> Path:
    """Where a patient tree's features go: ``data.features``, else $BIODL_CACHE/features."""
    return config.data.features or Path(os.environ.get("BIODL_CACHE", Path.home() / ".cache" / "biodl")) / "features"


def _tile_side(tiles: list[PatientTiles]) -> int:
    """A tile's side in level-0 pixels: the grid step of the positions (else the first image's width)."""
    step = 0
    for t in tiles:
        for v in np.unique(t.xy - t.xy.min(axis=0)).tolist():
            step = gcd(step, int(v))
    if step:
        return step
    from PIL import Image

    with Image.open(tiles[0].files[0]) as im:
        return int(im.size[0])


def layout(config: MilRunConfig, path: Path | None = None, classes: list[str] | None = None) -> BagLayout:
    """The run's bags (or, with ``path``, another patient tree's, as the run makes them)."""
    d = config.data
    root = path or (embedded_path(d.dataset) if d.dataset else d.path)
    classes = classes or d.classes or (PRESETS[d.dataset]["classes"] if d.dataset else None)
    if path is None and d.path is not None and d.path.suffix.lower() in (".csv", ".tsv", ".gz"):
        return _table_layout(config, d.path, classes)
    tiles = patient_tiles(root)
    k = int(max(t.labels.max() for t in tiles)) + 1
    classes = classes or [str(i) for i in range(max(k, 2))]
    if k > len(classes):
        raise DataError(root, f"tile label {k - 1} is not a class: the classes are {', '.join(classes)}")
    side = _tile_side(tiles)
    bag_slide, bag_tiles, labels = [], [], []
    for s, t in enumerate(tiles):
        if d.bags == "slide":
            members, lab = [np.arange(len(t.files))], [int(t.labels.max())]
        else:
            bags = window_bags(t.xy, side, d.window, d.min_tiles)
            members = [np.flatnonzero(bags == b) for b in range(int(bags.max()) + 1)] if (bags >= 0).any() else []
            lab = bag_labels(bags, t.labels).tolist()
        bag_slide += [s] * len(members)
        bag_tiles += members
        labels += lab
    if not bag_tiles:
        raise DataError(root, f"no bag: no {d.window} x {d.window}-tile window holds data.min_tiles ({d.min_tiles}) "
                              "tiles")
    return BagLayout([t.name for t in tiles], [t.name for t in tiles], tiles, None, np.asarray(bag_slide),
                     bag_tiles, np.asarray(labels, np.int64), list(classes), side, Path(root))


def _cache_entries(root: Path) -> tuple[Provenance, dict[str, str]]:
    """A finished cache's provenance and slide -> entry (by the slide's path and by its name)."""
    found = root / "provenance.json"
    if not found.is_file():
        raise DataError(root, "is not a feature cache (no provenance.json; make one with biodl wsi features)")
    prov = Provenance.model_validate(read_json(found, DataError))
    entries: dict[str, str] = {}
    for meta in sorted(root.glob("*/meta.json")):
        slide = str(read_json(meta, DataError).get("slide", ""))
        entries[slide] = entries[Path(slide).name] = meta.parent.name
    return prov, entries


def _table_layout(config: MilRunConfig, table: Path, classes: list[str] | None) -> BagLayout:
    rows = read_csv(table)
    missing = [c for c in ("slide", "label") if c not in rows.columns]
    if missing:
        raise DataError(table, f"a slide table needs columns slide,label[,patient]; missing {', '.join(missing)}")
    slides = rows["slide"].astype(str).str.strip().tolist()
    twice = sorted({s for s in slides if slides.count(s) > 1})
    if twice:
        raise DataError(table, f"slide {twice[0]!r} is listed {slides.count(twice[0])} times; one row a slide")
    _, entries = _cache_entries(config.data.features)
    absent = [s for s in slides if s not in entries]
    if absent:
        raise DataError(table, f"{len(absent)} slides are not in the feature cache {config.data.features} "
                               f"(e.g. {absent[0]!r}); extract them first with biodl wsi features")
    names = rows["label"].astype(str).str.strip().to_numpy()
    classes = classes or sorted(set(names))
    if not set(names) <= set(classes):
        raise DataError(table, f"label {sorted(set(names) - set(classes))[0]!r} is not a class ({', '.join(classes)})")
    patients = rows["patient"].astype(str).tolist() if "patient" in rows.columns else slides
    n = len(slides)
    return BagLayout(slides, patients, None, [entries[s] for s in slides], np.arange(n), [np.empty(0, np.int64)] * n,
                     np.asarray([classes.index(v) for v in names], np.int64), list(classes), 0, table)


def extractor_folds(config: MilRunConfig) -> int | None:
    """The number of folds of the run's extractor when it is a k-fold parent, else None."""
    ext = config.data.extractor
    if ext is None or not (ext / runs.PREPROCESS).is_file():
        return None
    folds = read_json(ext / runs.PREPROCESS, DataError).get("folds")
    return int(folds) if folds else None


def extractor_of(config: MilRunConfig) -> Path:
    """The one network (run folder) whose features this run reads: a k-fold extractor's fold."""
    folds = extractor_folds(config)
    if folds is None:
        return config.data.extractor
    if config.data.split != "kfold" or config.data.folds != folds:
        raise ConfigError("data.folds", f"the extractor {config.data.extractor} is a {folds}-fold run: a MIL run on "
                                        f"its features is {folds}-fold too (data.split: kfold, data.folds: {folds})")
    return runs.fold_dir(config.data.extractor, config.data.fold or 0)


def features(config: MilRunConfig, lay: BagLayout, progress: bool = True) -> tuple[list[np.ndarray], Provenance,
                                                                                     Path | None]:
    """Each slide's (N_s, D) tile features, their provenance and the extractor run (a table: None),
    extracting a patient tree's missing slides into the cache first."""
    if lay.entries is not None:
        prov, _ = _cache_entries(config.data.features)
        cache = FeatureCache(config.data.features, prov)
        return [cache.read(e)[0] for e in lay.entries], prov, None
    from ..progress import progress_bar
    from .features import run_extractor

    run = extractor_of(config)
    fn, prov = run_extractor(run)
    cache = FeatureCache(cache_root(config) / prov.key(), prov)
    slides = {t.name: t.files for t in lay.tiles}
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("tile features", total=len(slides))
        report = extract(slides, fn, cache, progress=lambda: bar.advance(task))
    out = []
    for t in lay.tiles:
        feats, coords = cache.read(report["entries"][t.name])
        if not np.array_equal(coords, t.xy):
            raise DataError(cache.entry(report["entries"][t.name]), "holds other tile positions than the slide's")
        out.append(feats)
    return out, prov, run


def _patients_of(predictions: Path) -> set[str]:
    if not predictions.is_file():
        raise DataError(predictions, "missing: the extractor's fold has no predictions to take its patients from")
    return set(pd.read_csv(predictions, dtype={"patient": str}, usecols=["patient"])["patient"].astype(str))


def split(config: MilRunConfig, lay: BagLayout) -> dict[str, np.ndarray]:
    """The bags of train/val/test: a k-fold extractor's fold's patients, else the run's own
    split by patient (data.fold of data.folds, or the first of round(1 / data.test_fraction))."""
    d, groups = config.data, lay.groups
    if extractor_folds(config) is not None:
        fold = extractor_of(config)
        test, val = (_patients_of(fold / runs.predictions_file(p)) for p in ("test", "val"))
        parts = {"test": np.flatnonzero(np.isin(groups, list(test))), "val": np.flatnonzero(np.isin(groups, list(val)))}
        parts["train"] = np.setdiff1d(np.arange(len(groups)), np.concatenate([parts["test"], parts["val"]]))
        return {k: parts[k] for k in ("train", "val", "test")}
    k = d.folds if d.split == "kfold" else min(max(2, round(1 / d.test_fraction)), len(set(groups)))
    return kfold_splits(lay.labels, groups, k, d.val_fraction, config.seed, str(lay.where))[d.fold or 0]


def bag_set(lay: BagLayout, feats: list[np.ndarray], rows: np.ndarray, max_tiles: int | None = None) -> BagSet:
    """The bags ``rows`` with their features; a slide bag is all its slide's tiles."""
    bags = []
    for b in rows.tolist():
        f = feats[lay.bag_slide[b]]
        tiles = lay.bag_tiles[b] if len(lay.bag_tiles[b]) else np.arange(len(f))
        bags.append(torch.from_numpy(np.ascontiguousarray(f[tiles])))
    return BagSet(bags, lay.labels[rows], max_tiles)
