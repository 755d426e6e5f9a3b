"""Decode once: an on-disk cache of decoded image sets.

A set is stored as ``images.npy`` (uint8 (N, H, W, C), read back row by row) and
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
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from ..io import atomic_folder, sha256_file

if TYPE_CHECKING:  # pragma: no cover - arrays imports torch; the slide cache needs none
    from .arrays import ImageSet


__all__ = [
    "content_key", "cache_key", "row_indices", "DiskArray", "ConcatArray", "cached", "write_synced", "write_npy",
    "commit_entry", "memo_sha256",
]


def content_key(files: list[Path], params: dict[str, Any]) -> str:
    """sha256 over the loading parameters and every file's relative name and content hash. A file
    that cannot be read (a link loop, permission) enters by its fault instead: the decoder reports
    it as a bad file, and ``skip_bad`` decides."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    files = [Path(os.path.abspath(f)) for f in files]
    root = Path(os.path.commonpath([str(f) for f in files])) if len(files) > 1 else files[0].parent
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode())
        try:
            h.update(sha256_file(f).encode())
        except OSError as exc:
            h.update(f"unreadable: errno {exc.errno}".encode())
    return h.hexdigest()


def cache_key(images: object) -> str | None:
    """The content key (see :func:`content_key`) of images read from the cache (for rows of
    several cache entries, a sha256 over theirs), else None."""
    if isinstance(images, ConcatArray):
        return hashlib.sha256("|".join(part.path.parent.name for part in images.parts).encode()).hexdigest()
    return images.path.parent.name if isinstance(images, DiskArray) else None


def _arr(a: np.ndarray | None) -> list | None:
    return None if a is None else a.tolist()


def row_indices(index, n: int) -> np.ndarray:
    """(k,) int64 rows of an array of ``n`` rows named by a slice, integer or boolean indices
    (negative counted from the end); out of range is an IndexError."""
    rows = np.arange(n)[index] if isinstance(index, slice) else np.asarray(index)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    rows = np.where(rows < 0, rows + n, rows).astype(np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"row index out of range for {n} rows")
    return rows


class DiskArray:
    """A read-only ``.npy`` array left on disk: indexing (an int, a slice or integer indices along
    the first axis) reads just those rows with ``pread`` into a new in-memory array.

    Unlike a memory map, rows read this way never count toward the process's resident memory:
    they stay in the operating system's page cache, shared and reclaimable, so training on a
    cached set takes only a batch of memory beyond the model, however large the set.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"{self.path}: unsupported .npy version {version}")
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype.hasobject:
            raise ValueError(f"{self.path}: not a C-ordered plain array")
        self.shape, self.dtype = tuple(shape), dtype
        self.ndim = len(self.shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        self._fd, self._pid = -1, -1

    def __len__(self) -> int:
        return self.shape[0]

    def _file(self) -> int:
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": -1, "_pid": -1}

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        rows = row_indices(index, len(self))
        return self.read_into(rows, np.empty((len(rows), *self.shape[1:]), dtype=self.dtype))

    def read_into(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
        """Read ``rows`` (int64, in range) into the first ``len(rows)`` rows of ``out`` (a
        C-contiguous array of this dtype and row shape, e.g. a buffer reused batch after batch:
        no allocation, no page faults) and return that part of ``out``; with ``at``, into rows
        ``at`` of ``out`` (one per row), returning all of ``out``."""
        rows = np.asarray(rows, dtype=np.int64)
        if at is None:
            out = out[: len(rows)]
        if not len(rows):
            return out
        flat, fd = out.reshape(len(out), -1).view(np.uint8), self._file()
        # in file order (the kernel reads ahead), one read per run of rows that are consecutive both
        # in the file and in ``out``; each lands straight in its place, so the order asked is kept
        order = np.argsort(rows, kind="stable")
        srows, dest = rows[order], (order if at is None else np.asarray(at, dtype=np.int64)[order])
        cut = np.flatnonzero((np.diff(srows) != 1) | (np.diff(dest) != 1)) + 1
        for a, b in zip(np.r_[0, cut].tolist(), np.r_[cut, len(rows)].tolist(), strict=True):
            d = int(dest[a])
            self._pread(fd, memoryview(flat[d:d + b - a]).cast("B"), self.offset + int(srows[a]) * self.row_bytes)
        return out

    def _pread(self, fd: int, view: memoryview, at: int) -> None:
        """Fill ``view`` from byte ``at`` (a read may return less than asked: Linux caps one at
        2 GiB; only end of file is an error)."""
        done = 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], at + done)
            if got <= 0:
                raise OSError(f"{self.path}: short read ({done} of {len(view)} bytes at offset {at}); the cache "
                              "file is truncated")
            done += got

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def __del__(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)


class ConcatArray:
    """The rows of several :class:`DiskArray` s (one per slide, say) as one read-only array:
    indexing with integer rows reads each from its part, in the order asked."""

    def __init__(self, parts: list[DiskArray]) -> None:
        if not parts:
            raise ValueError("no arrays to join")
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) > 1 or len({p.dtype for p in parts}) > 1:
            raise ValueError(f"arrays of different row shapes {sorted(shapes)} cannot be joined")
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])
        self.dtype, self.ndim = parts[0].dtype, len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        rows = row_indices(index, len(self))
        return self.read_into(rows, np.empty((len(rows), *self.shape[1:]), dtype=self.dtype))

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """As :meth:`DiskArray.read_into`: each part reads its rows straight into their places."""
        rows = np.asarray(rows, dtype=np.int64)
        out = out[: len(rows)]
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for k in np.unique(part):
            at = np.flatnonzero(part == k)
            self.parts[k].read_into(rows[at] - self.starts[k], out, at=at)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)


def _read(entry: Path) -> ImageSet:
    from .arrays import ImageSet

    meta = json.loads((entry / "meta.json").read_text())
    images = DiskArray(entry / "images.npy")
    size = (entry / "images.npy").stat().st_size
    if size != images.offset + len(images) * images.row_bytes or len(images) != len(meta["labels"]):
        raise ValueError(f"images.npy holds {size} bytes, not {len(meta['labels'])} images")
    split, patients = (np.asarray(meta[k]) if meta[k] is not None else None for k in ("split", "patients"))
    return ImageSet(images, np.asarray(meta["labels"], dtype=np.int64), meta["classes"], split, patients,
                    meta["sources"])


def cached(load: Callable[[], ImageSet], files: list[Path], params: dict[str, Any],
           cache_dir: str | Path) -> tuple[ImageSet, bool]:
    """The set from the cache when its key is there, else ``load()`` stored under that key.
    Either way the images come back as a :class:`DiskArray` over the cache file (rows are read
    when indexed). Returns (set, hit)."""
    entry = Path(cache_dir) / content_key(files, params)
    if (entry / "meta.json").is_file():
        try:
            return _read(entry), True
        except (OSError, ValueError, KeyError) as exc:  # damaged from outside (our writes are atomic)
            warnings.warn(f"{entry}: unreadable cache entry ({exc}); decoding again", stacklevel=2)
            shutil.rmtree(entry, ignore_errors=True)
    data = load()

    def write(tmp: Path) -> None:
        write_npy(tmp / "images.npy", data.images.shape, [np.ascontiguousarray(data.images)])
        meta = {"labels": data.labels.tolist(), "classes": data.classes, "split": _arr(data.split),
                "patients": _arr(data.patients), "sources": data.sources, "params": params}
        write_synced(tmp / "meta.json", json.dumps(meta).encode())

    commit_entry(entry, write)  # the decoded copy is let go on return; training reads the file
    return _read(entry), False


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_npy(path: Path, shape: tuple[int, ...], blocks: Iterable[np.ndarray]) -> int:
    """Write a uint8 ``.npy`` of ``shape`` from ``blocks`` (arrays of rows, in order) as they come,
    so that no more than one block is ever in memory; returns the rows written. Fewer or more
    rows than ``shape[0]`` is an error (the file would not be a valid array)."""
    rows = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                                 "fortran_order": False, "shape": tuple(int(v) for v in shape)})
        for block in blocks:
            if block.shape[1:] != tuple(shape[1:]) or block.dtype != np.uint8:
                raise ValueError(f"{path}: a block of {block.shape} {block.dtype} in an array of {shape} uint8")
            f.write(np.ascontiguousarray(block).data)
            rows += len(block)
        if rows != shape[0]:
            raise ValueError(f"{path}: {rows} rows written for an array of {shape[0]}")
        f.flush()
        os.fsync(f.fileno())
    return rows


def commit_entry(entry: Path, write: Callable[[Path], None]) -> None:
    """Make the cache folder ``entry`` atomically (:func:`biodl.io.atomic_folder`): ``write(tmp)``
    fills a hidden temporary folder beside it, which is then renamed to ``entry``. A failure (or
    a kill) leaves no entry; when another process committed the same entry first, theirs is kept."""
    with atomic_folder(entry, exists="keep") as tmp:
        write(tmp)


def memo_sha256(path: Path, cache_dir: str | Path) -> str:
    """sha256 of a (large) file's content, computed once per version of the file: remembered in
    ``cache_dir/hashes/`` under the file's absolute path, size, modification time and inode, so
    a whole-slide image of gigabytes is hashed once, not at every run that uses it."""
    path = Path(os.path.abspath(path))
    st = path.stat()
    stamp = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}".encode()).hexdigest()
    memo = Path(cache_dir) / "hashes" / stamp
    try:
        digest = memo.read_text().strip()
        if len(digest) == 64:
            return digest
    except OSError:
        pass
    digest = sha256_file(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
    tmp.write_text(digest)
    os.replace(tmp, memo)
    return digest
