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
- **Memory** is one slide's tiles at a time (in batches), whatever the number of slides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config import Strict
from ..errors import DataError
from ..io import atomic_folder, atomic_write_json, read_json, sha256_file

__all__ = ["Provenance", "FeatureCache", "content_of", "extract"]


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

    def write(self, content: str, slide: str, features: np.ndarray, coords: np.ndarray) -> None:
        from safetensors.numpy import save_file

        with atomic_folder(self.entry(content), exists="replace") as tmp:
            save_file({"features": np.ascontiguousarray(features, np.float32),
                       "coords": np.ascontiguousarray(coords, np.int64)}, str(tmp / "features.safetensors"))
            atomic_write_json(tmp / "meta.json", {"slide": slide, "tiles": int(len(features)),
                                                  "provenance": self.provenance.key()})

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


def extract(slides: dict[str, list[Path]], extractor: Callable[[list[Path]], np.ndarray], cache: FeatureCache,
            shard: str | None = None, coordinates: Callable[[list[Path]], np.ndarray] | None = None,
            progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """Features of every slide (id -> its tile files) of shard ``I/N`` (as ``biodl wsi infer
    --shard``: every N-th slide id from the I-th; None: all) into ``cache``, skipping the
    finished; ``coordinates(files)`` gives their (N, 2) level-0 positions (default: from the
    names, IDC style); ``progress()`` is called after each slide. Returns {"done", "skipped",
    "entries": slide -> content key}."""
    from .mosaics import patch_positions
    from .tiles import shard as take

    mine = [str(p) for p in take([Path(s) for s in slides], shard)]
    done, skipped, entries = 0, 0, {}
    for slide in mine:
        files = sorted(map(Path, slides[slide]), key=lambda p: p.name)
        if not files:
            raise DataError(slide, "has no tiles")
        content = content_of(files)
        entries[slide] = content
        if cache.done(content):
            skipped += 1
        else:
            coords = coordinates(files) if coordinates else patch_positions([f.name for f in files])
            if coords is None:
                raise DataError(files[0], "a tile name without its position (..._x<X>_y<Y>...)")
            cache.write(content, slide, extractor(files), coords)
            done += 1
        if progress is not None:
            progress()
    return {"done": done, "skipped": skipped, "entries": entries}
