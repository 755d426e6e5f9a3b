"""A per-slide tile-feature cache (#32): each slide's (or patient mosaic's) tiles turned once into
features (N, D) by an extractor, kept with their level-0 coordinates and the provenance that
made them, and reused by every experiment that asks for the same.

- **Provenance**: the extractor (e.g. an image run's penultimate layer, see
  :func:`biodl.tasks.features.run_extractor`), the sha256 of its weights, the tile size,
  resolution and stain normalisation it reads at. A cache folder holds one provenance
  (``provenance.json``); asking it for features of another is one DataError.
- **Entries** are keyed by the slide's content (the sha256 of its tile files), written whole
  (a temporary folder renamed), so a killed extraction resumes at the first slide not done, and
  ``shard=(i, n)`` takes every n-th slide from the i-th: shards of one cohort write disjoint
  entries whose union is one run's.
- **Sources**: a slide already cut into tile files (:class:`TileFiles`, positions from the
  names) or a whole-slide file cut into tissue tiles as it is read (:class:`SlideTiles`, at the
  extractor's resolution and tile size; its tiling settings are part of the entry's key).
- **Memory** is one block of tiles at a time, whatever the number or size of slides.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..config import Strict
from ..errors import DataError
from ..io import atomic_folder, atomic_write_json, read_json, sha256_file

__all__ = ["Provenance", "FeatureCache", "content_of", "TileFiles", "SlideTiles", "extract"]


class Provenance(Strict):
    """What made a cache's features; two caches agree when these do."""

    extractor: str
    weights_sha256: list[str]
    size: int
    mpp: float | None = None
    stain: str | None = None
    dim: int

    def key(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class FeatureCache:
    """Features of slides under ``root``, for one :class:`Provenance`."""

    def __init__(self, root: str | Path, provenance: Provenance) -> None:
        self.root, self.provenance = Path(root), provenance
        self.root.mkdir(parents=True, exist_ok=True)
        found = self.root / "provenance.json"
        if found.is_file():
            theirs = Provenance.model_validate(read_json(found, DataError))
            if theirs != provenance:
                differ = [k for k in Provenance.model_fields if getattr(theirs, k) != getattr(provenance, k)]
                raise DataError(self.root, f"holds features made otherwise ({', '.join(differ)} differ: e.g. "
                                           f"{differ[0]} {getattr(theirs, differ[0])!r}, asked "
                                           f"{getattr(provenance, differ[0])!r}); use another cache folder")
        else:
            atomic_write_json(found, provenance.model_dump())

    def entry(self, content: str) -> Path:
        return self.root / content

    def done(self, content: str) -> bool:
        return (self.entry(content) / "meta.json").is_file()

    def write(self, content: str, slide: str, features: np.ndarray, coords: np.ndarray,
              tiling: dict[str, Any] | None = None) -> None:
        from safetensors.numpy import save_file

        with atomic_folder(self.entry(content), exists="replace") as tmp:
            save_file({"features": np.ascontiguousarray(features, np.float32),
                       "coords": np.ascontiguousarray(coords, np.int64)}, str(tmp / "features.safetensors"))
            atomic_write_json(tmp / "meta.json", {"slide": slide, "tiles": int(len(features)),
                                                  "provenance": self.provenance.key(), "tiling": tiling})

    def read(self, content: str) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, D), coords (N, 2)) of a finished entry."""
        from safetensors.numpy import load_file

        path = self.entry(content) / "features.safetensors"
        try:
            arrays = load_file(str(path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise DataError(path, f"cannot be read as a feature entry ({exc})") from None
        feats, coords = arrays.get("features"), arrays.get("coords")
        if feats is None or coords is None or feats.ndim != 2 or feats.shape[1] != self.provenance.dim or \
                coords.shape != (len(feats), 2) or not np.isfinite(feats).all():
            raise DataError(path, f"is not a feature entry of {self.provenance.dim}-dimensional features")
        return feats, coords


def content_of(files: Sequence[Path]) -> str:
    """A slide's content key: the sha256 of its tile files' names and bytes, in name order."""
    h = hashlib.sha256()
    for f in sorted(map(Path, files), key=lambda p: p.name):
        h.update(f.name.encode())
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()[:32]


class TileFiles:
    """A slide (or patient mosaic) already cut into tile files; positions from ``coordinates(files)``
    (default: the names, ``..._x<X>_y<Y>...``)."""

    def __init__(self, files: Sequence[Path], coordinates: Callable[[list[Path]], np.ndarray] | None = None) -> None:
        self.files = sorted(map(Path, files), key=lambda p: p.name)
        self.coordinates = coordinates

    def content(self) -> str:
        return content_of(self.files)

    def blocks(self, n: int = 512) -> Iterator[tuple[Any, np.ndarray]]:
        """(tile files, their (n, 2) level-0 positions) a block at a time."""
        from .mosaics import patch_positions

        coords = self.coordinates(self.files) if self.coordinates else patch_positions([f.name for f in self.files])
        if coords is None:
            raise DataError(self.files[0], "a tile name without its position (..._x<X>_y<Y>...)")
        for start in range(0, len(self.files), n):
            yield self.files[start:start + n], coords[start:start + n]


class SlideTiles:
    """A whole-slide file cut into tissue tiles of ``size`` px at ``mpp`` um/px as it is read (a
    block at a time: memory does not grow with the slide); ``slide_mpp``: the slide's resolution
    where its file records none."""

    def __init__(self, path: str | Path, size: int, mpp: float, min_tissue: float = 0.5,
                 slide_mpp: float | None = None) -> None:
        from .tiles import Tiling

        self.path, self.slide_mpp = Path(path), slide_mpp
        self.tiling = Tiling(mpp, size, 0, min_tissue)

    def settings(self) -> dict[str, Any]:
        return {**self.tiling.to_dict(), "slide_mpp": self.slide_mpp}

    def content(self) -> str:
        h = hashlib.sha256(bytes.fromhex(sha256_file(self.path)))
        h.update(json.dumps(self.settings(), sort_keys=True).encode())
        return h.hexdigest()[:32]

    def blocks(self, n: int = 64) -> Iterator[tuple[Any, np.ndarray]]:
        """((n, size, size, 3) uint8 tiles, their (n, 2) level-0 top-left positions) a block at a time."""
        from .tiles import iter_tiles
        from .wsi import open_slide

        with open_slide(self.path, self.slide_mpp) as slide:
            tiles, _, mpp = self.tiling.cut(slide)
            if tiles.empty:
                raise DataError(self.path, f"no tissue tile ({self.tiling.size} px at {mpp:g} um/px with at least "
                                           f"{self.tiling.min_tissue:.0%} tissue): the slide makes no bag")
            xy = tiles[["x", "y"]].to_numpy(np.int64)
            start = 0
            for block in iter_tiles(slide, tiles, self.tiling.size, mpp, chunk=n):
                yield block, xy[start:start + len(block)]
                start += len(block)


def extract(slides: dict[str, Any], extractor: Callable[[Any], np.ndarray], cache: FeatureCache,
            shard: str | None = None, progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """Features of every slide (id -> its :class:`TileFiles`, :class:`SlideTiles`, or a list of
    tile files) of shard ``I/N`` (as ``biodl wsi infer --shard``: every N-th slide id from the I-th;
    None: all) into ``cache``, skipping the finished; ``extractor(block)`` turns a block of tiles
    (files, or uint8 pixels) into (n, D) features; ``progress()`` is called after each slide.
    Returns {"done", "skipped", "entries": slide -> content key}."""
    from .tiles import shard as take

    mine = [str(p) for p in take([Path(s) for s in slides], shard)]
    done, skipped, entries = 0, 0, {}
    for slide in mine:
        source = slides[slide]
        if not isinstance(source, (TileFiles, SlideTiles)):
            if not source:
                raise DataError(slide, "has no tiles")
            source = TileFiles(source)
        content = source.content()
        entries[slide] = content
        if cache.done(content):
            skipped += 1
        else:
            feats, coords = [], []
            for block, xy in source.blocks():
                feats.append(extractor(block))
                coords.append(xy)
            cache.write(content, slide, np.concatenate(feats), np.concatenate(coords),
                        source.settings() if isinstance(source, SlideTiles) else None)
            done += 1
        if progress is not None:
            progress()
    return {"done": done, "skipped": skipped, "entries": entries}
