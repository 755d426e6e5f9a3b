"""DICOM files as 8-bit images (pydicom), for every image layout.

A single-frame DICOM image becomes what a photograph would be:
- greyscale: stored values through the modality LUT (rescale slope and intercept), then the
  VOI LUT when the file has one, else its first window (centre/width, DICOM's linear formula),
  else the image's own range, onto 0-255; MONOCHROME1 (white = low) is inverted;
- colour (RGB, or YBR converted to RGB): kept, 16-bit scaled down to 8.

A multi-frame file, a file without pixel data, pixel data compressed in a transfer syntax
whose decoder is not installed, an image over the pixel limit (Pillow's
``Image.MAX_IMAGE_PIXELS``, checked from the header before decoding; a deflated file is
inflated in bounded chunks first, up to :data:`BYTES_PER_PIXEL` bytes a pixel of that limit),
header numbers that are not finite numbers (a NaN or zero RescaleSlope, a NaN window) and a
rescale or window that leaves every pixel of a varied image one value are
:class:`~biodl.errors.ImageFault` s that say what to do. The patient id (PatientID) is read
from the header for layouts that give none, so splits are grouped by patient.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ImageFault

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["SUFFIXES", "BYTES_PER_PIXEL", "is_dicom", "read_dicom", "dicom_size", "dicom_patient"]

#: file suffixes read as DICOM (pydicom) instead of Pillow
SUFFIXES = (".dcm", ".dicom")
#: a deflated file may inflate to at most this many bytes per pixel of the pixel limit (16-bit RGB
#: is 6, and the header's other elements fit in the rest)
BYTES_PER_PIXEL = 8
DECODERS = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (JPEG, JPEG 2000), or python-gdcm"


def is_dicom(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def _limit() -> int | None:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _check_deflated(path: Path) -> None:
    """A file in the deflated transfer syntax, inflated in bounded chunks (counted, not kept):
    an ImageFault when it would inflate past the cap (pydicom inflates it whole)."""
    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    meta = read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian or (limit := _limit()) is None:
        return
    cap, total, inflate = limit * BYTES_PER_PIXEL, 0, zlib.decompressobj(-zlib.MAX_WBITS)
    with open(path, "rb") as f:
        f.seek(132 + 12 + int(meta.get("FileMetaInformationGroupLength", 0)))  # preamble, DICM, group length
        while chunk := f.read(1 << 16):
            while chunk:
                total += len(inflate.decompress(chunk, 1 << 22))
                chunk = inflate.unconsumed_tail
                if total > cap:
                    raise ImageFault(f"deflated DICOM inflating to more than {cap:,} bytes ({BYTES_PER_PIXEL} a "
                                     f"pixel of the {limit:,}-pixel limit; a decompression bomb?)")


def _header(path: Path, pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        _check_deflated(path)
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError, zlib.error) as exc:
        raise ImageFault(f"not a readable DICOM file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                         ) from None
    except OSError as exc:
        raise ImageFault(f"unreadable ({exc.strerror or exc})") from None


def dicom_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header."""
    ds = _header(Path(path), pixels=False)
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageFault("DICOM without an image (no Rows/Columns)")
    return int(ds.Columns), int(ds.Rows)


def dicom_patient(path: str | Path) -> str:
    """The header's PatientID, stripped ("" when empty or absent)."""
    ds = _header(Path(path), pixels=False)
    return str(ds.get("PatientID", "") or "").strip()


def _number(ds: Any, keyword: str, default: float) -> float:
    """A header number (the first of several, as a CT file's two windows), finite; ``default``
    when absent. Text that is not a number, NaN or infinity is an ImageFault naming the tag."""
    if keyword not in ds:
        return default
    try:
        value = ds[keyword].value
        first = value[0] if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else value
        number = float(first)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ImageFault(f"{keyword} is not a number ({str(ds[keyword].value)[:40]!r})") from None
    if not math.isfinite(number):
        raise ImageFault(f"{keyword} is {number}, not a finite number")
    return number


def _rescale(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Stored values -> modality values (the Modality LUT, or RescaleSlope and RescaleIntercept)."""
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(arr, ds).astype(np.float64)
    slope, intercept = _number(ds, "RescaleSlope", 1.0), _number(ds, "RescaleIntercept", 0.0)
    if slope == 0:
        raise ImageFault("RescaleSlope is 0: every pixel would have the same value")
    with np.errstate(over="ignore", invalid="ignore"):
        y = arr.astype(np.float64) * slope + intercept
    if not np.isfinite(y).all():
        raise ImageFault(f"RescaleSlope {slope:.3g} and RescaleIntercept {intercept:.3g} overflow the pixel values")
    return y


def _stretch(y: np.ndarray) -> np.ndarray:
    lo, hi = float(y.min()), float(y.max())
    return (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y)


def _window(x: np.ndarray, ds: Any) -> np.ndarray:
    """Modality-LUT values -> [0, 1] by the VOI LUT, the first window, or the image's range. A
    VOI LUT or window that turns a varied image into one value is an ImageFault saying so."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:
        y = _stretch(apply_voi_lut(x, ds).astype(np.float64))
        what = "its VOI LUT maps every pixel to one value"
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        c, w = _number(ds, "WindowCenter", 0.0), _number(ds, "WindowWidth", 1.0)
        if w < 1:
            raise ImageFault(f"WindowWidth is {w:g}; DICOM requires at least 1")
        y = np.clip((x - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0) if w > 1 else (x >= c).astype(np.float64)
        what = (f"its window (centre {c:g}, width {w:g}) lies {'above' if y.max() == 0 else 'below'} every pixel "
                f"value ({x.min():g} to {x.max():g})")
    else:
        return _stretch(x)
    if x.max() > x.min() and y.max() == y.min():
        raise ImageFault(f"{what}: the image would be one flat grey; fix the header or remove the VOI LUT/window")
    return y


def read_dicom(path: str | Path) -> "PILImage.Image":
    """The DICOM image at ``path`` as an 8-bit Pillow image ("L" or "RGB"); see the module."""
    from PIL import Image
    from pydicom.pixels import convert_color_space

    path = Path(path)
    ds = _header(path, pixels=True)
    if "PixelData" not in ds:
        raise ImageFault("DICOM without pixel data (a report or structured document?)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageFault(f"multi-frame DICOM ({frames} frames): biodl reads one image per file; save the frames as "
                         "separate files")
    rows, cols, samples = (int(_number(ds, k, 1)) for k in ("Rows", "Columns", "SamplesPerPixel"))
    if (limit := _limit()) is not None and rows * cols > limit:
        raise ImageFault(f"declares {cols} x {rows} pixels, over the limit of {limit:,} (a decompression bomb?)")
    syntax = ds.file_meta.get("TransferSyntaxUID") if "file_meta" in dir(ds) else None
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises several kinds for a missing decoder or bad data
        if syntax is not None and syntax.is_compressed:
            raise ImageFault(f"pixel data compressed as {syntax.name}, and no decoder for it is installed: "
                             f"{DECODERS}") from None
        raise ImageFault(f"unreadable pixel data ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                         ) from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3 and samples == 3:
        if photometric.startswith("YBR"):
            arr = convert_color_space(arr, photometric, "RGB")
        if arr.dtype != np.uint8:
            bits = int(_number(ds, "BitsStored", 16))
            if not 1 <= bits <= 16:
                raise ImageFault(f"BitsStored is {bits}; colour images have 1 to 16")
            arr = np.clip(np.round(arr.astype(np.float64) / (2 ** bits - 1) * 255), 0, 255)
        return Image.fromarray(arr.astype(np.uint8), "RGB")
    if arr.ndim != 2:
        raise ImageFault(f"unexpected DICOM pixel array of shape {arr.shape}")
    y = _window(_rescale(arr, ds), ds)
    if photometric == "MONOCHROME1":
        y = 1.0 - y
    return Image.fromarray(np.round(y * 255).astype(np.uint8), "L")
