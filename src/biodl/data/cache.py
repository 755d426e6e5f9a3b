"""Decode once: an on-disk cache of decoded image sets.

A set is stored as ``images.npy`` (uint8 (N, H, W, C), memory-mapped when read) and
``meta.json`` (labels, classes, splits, patients, sources) in a folder named by the sha256 of
the inputs' contents and the loading parameters (e.g. the target size). A changed input or
size gives another key, so a stale cache is never read. The folder is written under a
temporary name and renamed into place: a kill never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..io import fsync_dir, sha256_file
from .arrays import ImageSet


def content_key(files: list[Path], params: dict[str, Any]) -> str:
    """sha256 over the loading parameters and every file's relative name and content hash."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    root = Path(os.path.commonpath([str(f) for f in files])) if len(files) > 1 else files[0].parent
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _arr(a: np.ndarray | None) -> list | None:
    return None if a is None else a.tolist()


def cached(load: Callable[[], ImageSet], files: list[Path], params: dict[str, Any],
           cache_dir: str | Path) -> tuple[ImageSet, bool]:
    """The set from the cache when its key is there, else ``load()`` stored under that key.
    Returns (set, hit)."""
    entry = Path(cache_dir) / content_key(files, params)
    if (entry / "meta.json").is_file():
        meta = json.loads((entry / "meta.json").read_text())
        images = np.load(entry / "images.npy", mmap_mode="r", allow_pickle=False)
        split, patients = (np.asarray(meta[k]) if meta[k] is not None else None for k in ("split", "patients"))
        return ImageSet(images, np.asarray(meta["labels"], dtype=np.int64), meta["classes"], split, patients,
                        meta["sources"]), True
    data = load()
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        with open(tmp / "images.npy", "wb") as f:
            np.save(f, np.ascontiguousarray(data.images), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        meta = {"labels": data.labels.tolist(), "classes": data.classes, "split": _arr(data.split),
                "patients": _arr(data.patients), "sources": data.sources, "params": params}
        with open(tmp / "meta.json", "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, entry)
        except OSError:  # another process stored the same key first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(entry.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return data, False
