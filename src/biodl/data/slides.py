"""Tiles of whole-slide images in the cache, and a table of labelled slides as a training set.

Each slide's tiles are stored once, in a cache entry of their own (``<cache>/slides/<key>/``:
``images.npy`` (N, size, size, 3) uint8, ``tiles.csv`` with their coordinates, tissue shares
and haematoxylin scores, ``mask.png``,
``meta.json``), keyed by the sha256 of the slide's content and of the tiling (and stain
normalisation) settings. Tiles go from the slide to the file block by block: no tile images on
disk, and memory does not grow with the slide. Entries are written under a temporary name and
renamed when complete; machines that share a cache folder (``biodl wsi tile --to-cache
--shard i/n``) fill it slide by slide without stepping on each other.

A **slide table** (a CSV with columns ``slide`` and ``label``, optionally ``patient``; slide
paths relative to the CSV) is a training set: every tile gets its slide's label (weak,
slide-level supervision) and its slide's patient (the slide itself when no ``patient`` column),
so splits never put tiles of one patient on both sides. Tile sources are named
``<slide file>/<slide name>_x<X>_y<Y>`` with X, Y the tile's top-left corner in pixels at the
tiles' resolution (``tiles.csv`` in the entry has level-0 pixels), which the slide maps of
image runs read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import pandas as pd

from ..errors import DataError, path_problem
from ..io import read_json
from .cache import ConcatArray, DiskArray, commit_entry, memo_sha256, write_npy, write_synced
from .tiles import Tiling, iter_tiles, scored, with_score
from .tissue import mask_overlay
from .wsi import check_mpp, open_slide

if TYPE_CHECKING:  # pragma: no cover - arrays imports torch; caching a slide's tiles needs none
    from .arrays import ImageSet

__all__ = ["cache_slide", "read_slide_table", "load_slide_set", "is_slide_table", "slide_progress"]


@contextmanager
def slide_progress(where: str | Path) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar over a cohort's slides (rich; removed when done): yields the callback that
    :func:`load_slide_set` calls after each slide."""
    from ..progress import progress_bar

    with progress_bar() as bar:
        task = bar.add_task(f"tiling {Path(where).name}", total=None)

        def update(done: int, total: int, slide: str) -> None:
            bar.update(task, completed=done, total=total, description=f"tiles of {slide}")

        yield update


def _key(digest: str, tiling: Tiling, slide_mpp: float | None, stain: dict | None) -> str:
    params = {"kind": "slide-tiles", "slide_sha256": digest, "tiling": tiling.to_dict(), "slide_mpp": slide_mpp,
              "stain": stain}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def _entry_meta(entry: Path, size: int) -> dict[str, Any]:
    """A cache entry's ``meta.json``, checked against its files (a ValueError, OSError or
    DataError when it was damaged from outside: our writes are atomic)."""
    meta = read_json(entry / "meta.json", DataError)
    n, slide_mpp, tile_mpp = meta.get("tiles"), meta.get("slide_mpp"), meta.get("tile_mpp")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"meta.json's tile count is {n!r}")
    for value in (slide_mpp, tile_mpp):
        check_mpp(value, entry / "meta.json")
    if n:
        images = DiskArray(entry / "images.npy")
        need = images.offset + n * size * size * 3
        if len(images) != n or images.row_bytes != size * size * 3 or (entry / "images.npy").stat().st_size != need:
            raise ValueError(f"images.npy does not hold {n} tiles of {size} px")
    if not (entry / "tiles.csv").is_file():
        raise ValueError("no tiles.csv")
    return meta


def cache_slide(path: str | Path, tiling: Tiling, cache_dir: str | Path, slide_mpp: float | None = None,
                normalizer: Any = None, progress: Callable[[int, int], None] | None = None,
                override_mpp: bool = False) -> tuple[Path, int, bool]:
    """Store one slide's tiles in the cache (see the module's docstring) unless they are there
    (an entry damaged from outside is warned about and made again). ``slide_mpp``: the
    resolution of a slide that records none (``override_mpp``: of every slide). Returns (the
    entry, its number of tiles, whether it was there already)."""
    from PIL import Image

    path = Path(path)
    stain = normalizer.to_dict() if normalizer is not None else None
    with open_slide(path, slide_mpp, override_mpp) as slide:
        # keyed by the resolution in effect (the file's, or the one given for a file without it)
        entry = Path(cache_dir) / "slides" / _key(memo_sha256(path, cache_dir), tiling, slide.mpp, stain)
        if (entry / "meta.json").is_file():
            try:
                return entry, int(_entry_meta(entry, tiling.size)["tiles"]), True
            except (OSError, ValueError, DataError) as exc:
                warnings.warn(f"{entry}: damaged slide-cache entry ({getattr(exc, 'problem', exc)}); tiling "
                              f"{path.name} again", stacklevel=2)
                shutil.rmtree(entry, ignore_errors=True)
        tiles, tissue, mpp = tiling.cut(slide)

        def write(tmp: Path) -> None:
            scores: list[np.ndarray] = []
            blocks = scored(iter_tiles(slide, tiles, tiling.size, mpp, progress=progress), scores)
            if normalizer is not None:
                blocks = (normalizer(b) for b in blocks)
            write_npy(tmp / "images.npy", (len(tiles), tiling.size, tiling.size, 3), blocks)
            with_score(tiles, scores).to_csv(tmp / "tiles.csv", index=False)
            Image.fromarray(mask_overlay(tissue.thumb, tissue.mask)).save(tmp / "mask.png")
            meta = {"slide": path.name, "tiles": len(tiles), "slide_mpp": slide.mpp, "tile_mpp": mpp,
                    "tiling": tiling.to_dict(), "stain": stain, "grid": list(tiles.attrs["grid"]),
                    "step": tiles.attrs["step"]}
            write_synced(tmp / "meta.json", json.dumps(meta, indent=1).encode())

        commit_entry(entry, write)
    return entry, len(tiles), False


def is_slide_table(path: Path) -> bool:
    """A CSV whose header names a ``slide`` column."""
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return "slide" in [c.strip().strip('"') for c in header.strip().split(",")]


def read_slide_table(path: str | Path) -> pd.DataFrame:
    """The slide table at ``path``: columns ``slide`` (absolute paths), ``label`` (str) and
    ``patient`` (str; the slide's name when the CSV has none). Faults are one-line ``DataError`` s
    naming the file, the row and the fault."""
    from .tabular import read_csv

    path = Path(path)
    table = read_csv(path)
    missing = [c for c in ("slide", "label") if c not in table.columns]
    if missing:
        raise DataError(path, f"a slide table needs the columns slide and label (missing: {', '.join(missing)})")
    if not len(table):
        raise DataError(path, "no slides listed")
    for col in ("slide", "label") + (("patient",) if "patient" in table.columns else ()):
        empty = table[col].isna() | (table[col].astype(str).str.strip() == "")
        if empty.any():
            raise DataError(path, f"row {int(np.flatnonzero(empty)[0]) + 2}: empty {col}")
    slides = []
    for i, s in enumerate(table["slide"]):
        try:
            slides.append((path.parent / str(s)).resolve())
        except (RuntimeError, OSError):  # a symbolic-link loop (RuntimeError before Python 3.13)
            raise DataError(path, f"row {i + 2}: slide {s}: a symbolic-link loop") from None
    dup = pd.Series([str(s) for s in slides]).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(path, f"row {i + 2}: slide {table['slide'].iat[i]} is listed twice")
    for i, s in enumerate(slides):
        if not s.is_file():
            why = path_problem(s) or ("a folder, not a slide file" if s.is_dir() else "not a regular file")
            raise DataError(path, f"row {i + 2}: slide {table['slide'].iat[i]}: {why}")
    return pd.DataFrame({"slide": slides, "label": table["label"].astype(str).str.strip(),
                         "patient": (table["patient"].astype(str).str.strip() if "patient" in table.columns
                                     else [s.stem for s in slides])})


def load_slide_set(path: str | Path, tiling: Tiling, cache_dir: str | Path, classes: list[str] | None = None,
                   slide_mpp: float | None = None, normalizer: Any = None,
                   progress: Callable[[int, int, str], None] | None = None,
                   override_mpp: bool = False) -> tuple[ImageSet, bool]:
    """The tiles of every slide of the slide table at ``path`` as one :class:`ImageSet` read from
    the cache (slides not cached yet are tiled into it first); ``progress(done, total, slide)``
    is called after each slide. Returns (the set, whether every slide was cached already)."""
    from .arrays import ImageSet

    path = Path(path)
    table = read_slide_table(path)
    names = sorted(set(table["label"])) if classes is None else list(classes)
    unknown = sorted(set(table["label"]) - set(names))
    if unknown:
        raise DataError(path, f"labels {unknown} are not among data.classes {names}")
    parts, labels, patients, sources, all_hit = [], [], [], [], True
    for i, row in enumerate(table.itertuples(index=False)):
        entry, n, hit = cache_slide(row.slide, tiling, cache_dir, slide_mpp, normalizer, override_mpp=override_mpp)
        all_hit &= hit
        if progress is not None:
            progress(i + 1, len(table), row.slide.name)
        if n == 0:
            continue  # no tissue tile: the slide adds nothing (counted by the caller from the table)
        parts.append(DiskArray(entry / "images.npy"))
        meta = _entry_meta(entry, tiling.size)
        coords = pd.read_csv(entry / "tiles.csv", usecols=["x", "y"]).to_numpy()
        coords = np.round(coords * meta["slide_mpp"] / meta["tile_mpp"]).astype(int)  # in tile pixels
        labels += [names.index(row.label)] * n
        patients += [row.patient] * n
        sources += [f"{row.slide}/{row.slide.stem}_x{x}_y{y}" for x, y in coords]
    if not parts:
        raise DataError(path, "no slide has a tissue tile at these settings (lower data.tiles.min_tissue?)")
    return ImageSet(ConcatArray(parts), np.asarray(labels, dtype=np.int64), names, None,
                    np.asarray(patients), sources), all_hit
