"""Image sets held as uint8 arrays: MedMNIST ``.npz`` files and ``X.npy`` / ``Y.npy`` pairs.

Every loader returns an :class:`ImageSet`: images (N, H, W, C) uint8, labels (N,) int64,
class names, and, where the layout has them, official split names and patient ids. Files
are read with ``allow_pickle=False``: an object array (which would need unpickling) is refused.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import io
from ..errors import DataError

__all__ = ["SPLITS", "ImageSet", "ImageDataset", "to_device", "load_npz", "load_npy_pair"]


SPLITS = ("train", "val", "test")


@dataclass
class ImageSet:
    """Images (N, H, W, C) uint8 with labels (N,) int64 in [0, len(classes))."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    split: np.ndarray | None = None  # (N,) "train" / "val" / "test" where the data set has official splits
    patients: np.ndarray | None = None  # (N,) patient ids, where known
    sources: list[str] = field(default_factory=list)  # where the images came from (for messages)
    patch: int | None = None  # data.fit pad: the side the patches were padded to (before any resize)
    stain: dict | None = None  # the stain normalisation the pixels went through (StainNormalizer.to_dict())

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> "ImageSet":
        """The images at ``idx`` (with their labels, splits and patients)."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return a[idx] if a is not None else None

        return ImageSet(self.images[idx], self.labels[idx], self.classes, pick(self.split), pick(self.patients),
                        self.sources)


class ImageDataset(Dataset):
    """torchvision-style dataset over an :class:`ImageSet`: ``(image, label)`` with the image a
    (C, H, W) uint8 tensor, or ``transform(image)``. ``indices`` picks a part of the set without
    copying it (a disk-cached set stays on disk until read). Indexing with a list or tensor
    of indices returns a whole batch (N, C, H, W) at once, which the engine's loaders use.

    The pixels are held one of three ways: rows of a file (the disk cache: each batch is read
    with ``pread``; see :meth:`read_into`), an array in memory, or, after :meth:`resident`, one
    (N, H, W, C) tensor on a device, from which a batch is one gather there. All three give
    the same batch, value for value and stride for stride.
    """

    batch_indexable = True

    def __init__(self, data: ImageSet, transform=None, indices: np.ndarray | None = None,
                 pixels: torch.Tensor | None = None) -> None:
        self.data = data
        self.classes = data.classes
        if pixels is None and isinstance(data.images, np.ndarray):
            pixels = torch.from_numpy(np.ascontiguousarray(data.images))
        self.pixels = pixels  # (N, H, W, C) uint8 in memory or on a device; None: rows read from disk
        self.indices = None if indices is None else torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        labels = torch.from_numpy(np.asarray(data.labels))
        # (N,) int64 on the CPU, whatever holds the pixels (reports take .numpy()); batches take
        # theirs from a copy beside the pixels
        self.labels = labels if self.indices is None else labels[self.indices]
        self._batch_labels = self.labels if pixels is None else self.labels.to(pixels.device)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        """Where batches come out: the device the pixels are resident on, else the CPU."""
        return self.pixels.device if self.pixels is not None else torch.device("cpu")

    def _rows(self, index) -> torch.Tensor | np.ndarray:
        return index if self.indices is None else self.indices[index]

    def __getitem__(self, index):
        rows = self._rows(index)
        if self.pixels is not None:
            rows = rows.to(self.pixels.device) if isinstance(rows, torch.Tensor) else rows
            x = self.pixels[rows]
        else:  # rows read from the disk cache
            x = torch.from_numpy(self.data.images[np.asarray(rows)])
        x = x.movedim(-1, -3)  # (..., H, W, C) -> (..., C, H, W), a view
        y = self._batch_labels[index.to(self._batch_labels.device) if isinstance(index, torch.Tensor) else index]
        return (self.transform(x) if self.transform is not None else x), y

    @property
    def reads_into(self) -> bool:
        """Whether :meth:`read_into` can give this dataset's batches in a reused buffer: pixels in
        process memory or rows of a cache file, with no transform in between."""
        if self.transform is not None:
            return False
        return self.device.type == "cpu" if self.pixels is not None else hasattr(self.data.images, "read_into")

    def read_into(self, index: torch.Tensor, out: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch ``self[index]`` (for a dataset that :attr:`reads_into`), its pixels gathered
        from memory or read from the disk cache straight into ``out`` (a (B, H, W, C) uint8 buffer
        with B >= len(index), reused batch after batch); the images returned are a view of ``out``.
        A gather from memory is one ``np.take``: it releases the GIL (threads gather in parallel)
        and, into a buffer already faulted in, runs at several times the speed of ``self[index]``,
        which gathers into fresh memory."""
        labels = self.labels[index]  # first: an index out of range is an IndexError here
        rows = np.asarray(self._rows(index))
        if self.pixels is not None:  # mode="clip" writes straight into out ("raise" goes through a copy)
            x = np.take(self.pixels.numpy(), rows, axis=0, out=out[: len(rows)], mode="clip")
        else:
            x = self.data.images.read_into(rows, out)
        return torch.from_numpy(x).movedim(-1, -3), labels

    def resident(self, device: torch.device | str, pixels: torch.Tensor | None = None) -> "ImageDataset":
        """This dataset with the whole set's pixels on ``device`` (the CPU: in process memory):
        read once into one (N, H, W, C) uint8 tensor there (see :func:`to_device`). Give
        ``pixels`` (another dataset's, from the same set) to share that copy instead."""
        device = torch.device(device)
        if pixels is None:
            same = self.pixels is not None and self.pixels.device == device
            pixels = self.pixels if same else to_device(self.data.images, device)
        return ImageDataset(self.data, self.transform, None if self.indices is None else self.indices.numpy(), pixels)

    def on_host(self) -> "ImageDataset":
        """This dataset with its batches read on the host (from the disk cache or memory, as
        before :meth:`resident`), for code that wants NumPy: figures, reports."""
        if self.device.type == "cpu":
            return self
        return ImageDataset(self.data, self.transform, None if self.indices is None else self.indices.numpy())


def to_device(images, device: torch.device, chunk: int = 1024) -> torch.Tensor:
    """(N, H, W, C) ``images`` (an array, or a disk-cache array read ``chunk`` rows at a time, so
    that the host never holds a second copy of the set) as one tensor on ``device``."""
    out = torch.empty(tuple(images.shape), dtype=torch.uint8, device=device)
    for start in range(0, len(images), chunk):
        block = torch.from_numpy(np.ascontiguousarray(images[start:start + chunk]))
        out[start:start + len(block)].copy_(block)
    return out


def _labels(raw: np.ndarray, n: int, where: str) -> np.ndarray:
    """(N,) or (N, 1) integer labels -> (N,) int64; anything else is a DataError."""
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise DataError(where, f"labels must have shape (N,) or (N, 1), got {raw.shape} (multi-label is not supported)")
    if len(raw) != n:
        raise DataError(where, f"{n} images but {len(raw)} labels")
    if not np.issubdtype(raw.dtype, np.integer):
        if not np.issubdtype(raw.dtype, np.floating) or not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
            raise DataError(where, f"labels must be whole numbers, got dtype {raw.dtype}")
    labels = raw.astype(np.int64)
    if labels.min(initial=0) < 0:
        raise DataError(where, f"negative label {labels.min()}")
    return labels


def _images(raw: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) images with C in {1, 3, 4} -> (N, H, W, C) uint8."""
    if raw.ndim == 3:
        raw = raw[..., None]
    if raw.ndim != 4 or raw.shape[-1] not in (1, 3, 4):
        raise DataError(where, f"images must be (N, H, W) or (N, H, W, C) with C = 1, 3 or 4, got {raw.shape}")
    if raw.dtype == np.uint8:
        return raw
    if np.issubdtype(raw.dtype, np.floating) and raw.size:
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        if bad:
            raise DataError(where, f"{bad} pixel value{'s are' if bad > 1 else ' is'} NaN or infinite; images must "
                                   "be uint8 (0-255) or floats in [0, 1]")
        lo, hi = float(raw.min()), float(raw.max())
        if 0.0 <= lo and hi <= 1.0:
            return np.round(raw * 255).astype(np.uint8)  # images scaled to [0, 1]
        raise DataError(where, f"float pixel values run from {lo:g} to {hi:g}; images must be uint8 (0-255) or "
                               "floats in [0, 1]")
    raise DataError(where, f"images must be uint8 (0-255) or floats in [0, 1], got {raw.dtype}")


def _check_member(path: Path, key: str) -> None:
    """A DataError when member ``key`` of the ``.npz`` at ``path`` would inflate like a bomb, or
    when its ``.npy`` header declares more bytes than the member holds (NumPy would allocate the
    declared array first): both read from the zip directory and the header, before inflating."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy") if f"{key}.npy" in zf.namelist() else None
        if info is None:
            return  # np.load names the missing key
        if info.file_size > io.INFLATE_FLOOR and info.file_size > io.MAX_INFLATION * max(info.compress_size, 1):
            raise DataError(path, f"member {key!r} inflates {info.file_size / max(info.compress_size, 1):.0f}-fold "
                                  f"to {info.file_size:,} bytes (a decompression bomb?)")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                return  # np.load says what is wrong with it
            shape, _, dtype = read[version](f)
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if declared > info.file_size:
                raise DataError(path, f"member {key!r} declares an array of shape {shape} ({declared:.3g} bytes) but "
                                      f"holds {info.file_size:,} bytes")


def _load(path: Path, key: str | None = None) -> np.ndarray:
    """One array: a ``.npy`` file, or member ``key`` of a ``.npz``; never unpickled. A member that is
    not in ``.npy`` format (NumPy then hands back its raw bytes, e.g. a pickle stream) is refused."""
    try:
        if key is None:
            out = np.load(path, allow_pickle=False)
        else:
            _check_member(path, key)
            with np.load(path, allow_pickle=False) as z:
                out = z[key]
        if not isinstance(out, np.ndarray):
            what = f"member {key!r}" if key is not None else "file"
            raise DataError(path, f"{what} is not a NumPy array in .npy format (raw bytes, e.g. a pickle stream); "
                                  "biodl never unpickles files")
        return out
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except ValueError as exc:  # object arrays need pickle; refused
        raise DataError(path, f"cannot read without unpickling ({exc}); biodl never unpickles files") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(path, f"not a valid NumPy file (truncated or corrupt): {exc}") from None


def _check_classes(labels: np.ndarray, classes: list[str] | None, where: str) -> list[str]:
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    if classes is None:
        return [str(i) for i in range(n_classes)]
    if n_classes > len(classes):
        raise DataError(where, f"label {n_classes - 1} is out of range for {len(classes)} classes")
    return list(classes)


def load_npz(path: str | Path, classes: list[str] | None = None) -> ImageSet:
    """A MedMNIST-style ``.npz``: ``{train,val,test}_images`` and ``{train,val,test}_labels``
    (at least the train pair); the official split of every image is kept."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(path, f"not a valid .npz file (truncated or corrupt): {exc}") from None
    present = [s for s in SPLITS if f"{s}_images" in keys or f"{s}_labels" in keys]
    missing = [f"{s}_{k}" for s in (present or ["train"]) for k in ("images", "labels") if f"{s}_{k}" not in keys]
    if missing or not present:
        raise DataError(path, f"missing keys: {', '.join(missing)} (found: {', '.join(sorted(keys)) or 'none'})")
    images, labels, split = [], [], []
    for s in present:
        x = _images(_load(path, f"{s}_images"), f"{path}: {s}_images")
        y = _labels(_load(path, f"{s}_labels"), len(x), f"{path}: {s}_labels")
        images.append(x)
        labels.append(y)
        split += [s] * len(x)
    shapes = {x.shape[1:] for x in images}
    if len(shapes) > 1:
        raise DataError(path, f"splits have different image shapes: {sorted(shapes)}")
    y = np.concatenate(labels)
    return ImageSet(np.concatenate(images), y, _check_classes(y, classes, str(path)), np.array(split), None,
                    [str(path)])


def load_npy_pair(folder: str | Path, classes: list[str] | None = None) -> ImageSet:
    """``X.npy`` (N, H, W, C) uint8 and ``Y.npy`` (N,) labels in one folder (the workshop's IDC set)."""
    folder = Path(folder)
    x_path, y_path = folder / "X.npy", folder / "Y.npy"
    for p in (x_path, y_path):
        if not p.is_file():
            raise DataError(p, "no such file (expected X.npy and Y.npy side by side)")
    x = _images(_load(x_path), str(x_path))
    y = _labels(_load(y_path), len(x), str(y_path))
    return ImageSet(x, y, _check_classes(y, classes, str(y_path)), None, None, [str(x_path)])
