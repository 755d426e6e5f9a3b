"""Retinal vessel segmentation data: fundus images with binary vessel masks and field-of-view
(FOV) masks, in three layouts.

- CHASE_DB1 (flat): ``Image_NNX.jpg`` with ``Image_NNX_1stHO.png`` (ground truth) and
  ``Image_NNX_2ndHO.png`` (second observer). No FOV masks: they are derived (:func:`derive_fov`).
- DRIVE: ``training|test/images/*.tif``, ``training|test/1st_manual/*_manual1.gif``,
  ``training|test/mask/*_mask.gif`` (optionally ``2nd_manual/*_manual2.gif``); matched by the
  number that starts each file name.
- folder: ``images/``, ``masks/`` (same stem, any image format), optional ``fov/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..errors import ImageFault
from .images import open_image

__all__ = [
    "IMAGE_EXT", "VesselCase", "CaseFiles", "read_image", "read_binary", "derive_fov", "chase_files", "folder_files",
    "read_cases", "load_chase", "load_drive", "load_folder", "detect_layout", "prepare_fundus", "patient_of",
]


IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".ppm")


@dataclass
class VesselCase:
    """One fundus image: ``image`` (H, W, 3) uint8, ``mask`` (H, W) bool vessels (the ground
    truth), ``fov`` (H, W) bool, ``second`` (H, W) bool (a second observer) or None."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    fov: np.ndarray
    fov_derived: bool
    second: np.ndarray | None = None


def _read(path: Path, what: str) -> np.ndarray:
    try:
        with open_image(path) as im:
            return np.asarray(im.convert("RGB") if what == "image" else im)
    except ImageFault as fault:
        raise DataError(path, f"{what}: {fault.problem}") from None


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; a bad file is a DataError."""
    return _read(path, "image")


def read_binary(path: Path, shape: tuple[int, int], what: str = "mask") -> np.ndarray:
    """A binary mask file as (H, W) bool: it must have ``shape`` and at most two grey levels
    (any channel layout; 0 is background)."""
    a = _read(path, what)
    if a.ndim == 3:
        if not (a == a[..., :1]).all():
            raise DataError(path, f"{what} is not binary: its colour channels differ")
        a = a[..., 0]
    if a.shape != shape:
        raise DataError(path, f"{what} is {a.shape[1]}x{a.shape[0]} but its image is {shape[1]}x{shape[0]}")
    levels = np.unique(a)
    if len(levels) > 2 or (len(levels) == 2 and levels[0] != 0):
        raise DataError(path, f"{what} is not binary: {len(levels)} grey levels "
                              f"({', '.join(map(str, levels[:5]))}{', ...' if len(levels) > 5 else ''})")
    return a > 0


def _within(a: np.ndarray, r: int, of: bool) -> np.ndarray:
    """Pixels whose nearest pixel where ``a`` is ``of`` lies within Euclidean distance ``r``
    (outside the image: False), from one exact distance transform (scipy's): a dilation of ``a``
    (``of=True``) or the complement of an erosion (``of=False``) by the disk ``hypot <= r``, the
    same pixels as ``ndimage.binary_dilation/erosion`` with that disk (border 0) in O(pixels)
    rather than O(pixels x disk)."""
    from scipy import ndimage

    pad = np.pad(a, r + 1)
    d2 = ndimage.distance_transform_edt(~pad if of else pad) ** 2  # squared distances are whole numbers
    return (d2 < r * r + 0.5)[r + 1:-r - 1, r + 1:-r - 1]


def derive_fov(image: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """The circular field of view of a fundus image (H, W, 3) uint8: red channel above
    ``threshold`` x its 99th percentile, closed and opened by a disk (radius ~1% of the width),
    holes filled, largest component kept."""
    from scipy import ndimage

    red = image[..., 0].astype(np.float32)
    fov = red > threshold * max(np.percentile(red, 99), 1.0)
    r = max(1, round(0.01 * image.shape[1]))
    closed = ~_within(_within(fov, r, True), r, False)  # closing: dilate, then erode
    fov = _within(~_within(closed, r, False), r, True)  # opening: erode, then dilate
    fov = ndimage.binary_fill_holes(fov)
    labels, n = ndimage.label(fov)
    if n > 1:
        sizes = ndimage.sum(fov, labels, range(1, n + 1))
        fov = labels == 1 + int(np.argmax(sizes))
    return fov


def _case(name: str, image_path: Path, mask_path: Path | None, fov_path: Path | None,
          second_path: Path | None) -> VesselCase:
    if mask_path is None or not mask_path.is_file():
        raise DataError(image_path, f"no vessel mask for this image (expected {mask_path.name if mask_path else '?'})")
    image = _read(image_path, "image")
    shape = image.shape[:2]
    mask = read_binary(mask_path, shape)
    fov = read_binary(fov_path, shape, "FOV mask") if fov_path is not None and fov_path.is_file() else None
    second = read_binary(second_path, shape) if second_path is not None and second_path.is_file() else None
    return VesselCase(name, image, mask, fov if fov is not None else derive_fov(image), fov is None, second)


#: one case's files before they are read: (name, image, vessel mask, FOV mask, second observer's mask)
CaseFiles = tuple[str, Path, Path | None, Path | None, Path | None]


def chase_files(root: str | Path) -> list[CaseFiles]:
    """The files of CHASE_DB1's flat folder, in name order (01L, 01R, 02L, ...), unread."""
    root = Path(root)
    images = sorted(p for p in root.glob("Image_*.jpg"))
    if not images:
        raise DataError(root, "no Image_NNX.jpg files (CHASE_DB1 layout)")
    return [(p.stem, p, root / f"{p.stem}_1stHO.png", None, root / f"{p.stem}_2ndHO.png") for p in images]


def read_cases(files: list[CaseFiles]) -> list[VesselCase]:
    """Each case's image and masks read and checked (FOV derived where it has none)."""
    return [_case(*f) for f in files]


def load_chase(root: str | Path) -> list[VesselCase]:
    """CHASE_DB1's flat folder, in name order (01L, 01R, 02L, ...)."""
    return read_cases(chase_files(root))


_CHASE_EYE = re.compile(r"^Image_(\d+)[LR]$")


def patient_of(name: str) -> str:
    """Who an image shows: CHASE_DB1's ``Image_NNL`` and ``Image_NNR`` are the left and right
    eyes of child NN (``child NN``); any other image (DRIVE's are of 40 people) is its own."""
    m = _CHASE_EYE.match(name)
    return f"child {m.group(1)}" if m else name


def _by_number(folder: Path) -> dict[str, Path]:
    out = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = re.match(r"(\d+)", p.name)
            if m and p.suffix.lower() in IMAGE_EXT:
                out[m.group(1)] = p
    return out


def load_drive(root: str | Path, part: str) -> list[VesselCase]:
    """DRIVE's ``training`` or ``test`` part."""
    base = Path(root) / part
    images = _by_number(base / "images")
    if not images:
        raise DataError(base / "images", "no images (DRIVE layout: <part>/images/NN_<part>.tif)")
    manual, masks, second = _by_number(base / "1st_manual"), _by_number(base / "mask"), _by_number(base / "2nd_manual")
    out = []
    for key in sorted(images, key=int):
        if key not in manual:
            raise DataError(images[key], f"no vessel mask for this image in {base / '1st_manual'}")
        out.append(_case(images[key].stem, images[key], manual[key], masks.get(key), second.get(key)))
    return out


def load_folder(root: str | Path) -> list[VesselCase]:
    """``images/`` with ``masks/`` (and optionally ``fov/``) of the same stems."""
    return read_cases(folder_files(root))


def folder_files(root: str | Path) -> list[CaseFiles]:
    """The files of an ``images/`` + ``masks/`` [+ ``fov/``, ``second/``] folder, unread; an image
    without a mask is an error."""
    root = Path(root)
    images = sorted(p for p in (root / "images").glob("*") if p.suffix.lower() in IMAGE_EXT)
    if not images:
        raise DataError(root / "images", "no images (folder layout: images/, masks/ [, fov/])")

    def same_stem(folder: str, stem: str) -> Path | None:
        hits = [p for p in (root / folder).glob(f"{stem}.*") if p.suffix.lower() in IMAGE_EXT]
        return hits[0] if hits else None

    out = []
    for p in images:
        mask = same_stem("masks", p.stem)
        if mask is None:
            raise DataError(p, f"no vessel mask for this image (expected {root / 'masks' / p.stem}.*)")
        out.append((p.stem, p, mask, same_stem("fov", p.stem), same_stem("second", p.stem)))
    return out


def detect_layout(root: Path) -> str:
    if (root / "training" / "images").is_dir() or (root / "test" / "images").is_dir():
        return "drive"
    if (root / "images").is_dir():
        return "folder"
    if any(root.glob("Image_*.jpg")):
        return "chase"
    raise DataError(root, "cannot tell the layout: expected CHASE_DB1 (Image_NNX.jpg), DRIVE (training/, test/) "
                          "or images/ + masks/")


def prepare_fundus(image: np.ndarray, channels: str, clahe: bool) -> np.ndarray:
    """(H, W, 3) uint8 -> (C, H, W) float32 in [0, 1]: green channel or RGB, optionally CLAHE."""
    x = (image[..., 1:2] if channels == "green" else image[..., :3]).astype(np.float32) / 255.0
    if clahe:
        from skimage.exposure import equalize_adapthist

        x = np.stack([equalize_adapthist(x[..., c], clip_limit=0.01) for c in range(x.shape[-1])], -1)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
