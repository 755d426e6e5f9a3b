"""DICOM files as 8-bit images (pydicom), for every image layout.

A single-frame DICOM image becomes what a photograph would be:
- greyscale: stored values through the modality LUT (rescale slope and intercept), then the
  VOI LUT when the file has one, else its first window (centre/width, DICOM's linear formula),
  else the image's own range, onto 0-255; MONOCHROME1 (white = low) is inverted;
- colour (RGB, or YBR converted to RGB): kept, 16-bit scaled down to 8.

A multi-frame file, a file without pixel data, or pixel data compressed in a transfer syntax
whose decoder is not installed are :class:`~biodl.errors.ImageFault` s that say what to
do. The patient id (PatientID) is read from the header for layouts that give none, so splits
are grouped by patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ImageFault

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["SUFFIXES", "is_dicom", "read_dicom", "dicom_size", "dicom_patient"]

#: file suffixes read as DICOM (pydicom) instead of Pillow
SUFFIXES = (".dcm", ".dicom")
DECODERS = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (JPEG, JPEG 2000), or python-gdcm"


def is_dicom(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def _header(path: Path, pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
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


def _window(x: np.ndarray, ds) -> np.ndarray:
    """Modality-LUT values -> [0, 1] by the VOI LUT, the first window, or the image's range."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" in ds:
        y = apply_voi_lut(x, ds).astype(np.float64)
        lo, hi = float(y.min()), float(y.max())
        return (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        def first(v):
            return float(v[0]) if isinstance(v, (list, tuple)) or getattr(v, "VM", 1) > 1 else float(v)

        c, w = first(ds.WindowCenter), max(first(ds.WindowWidth), 1.0)
        return np.clip((x - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0) if w > 1 else (x >= c).astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def read_dicom(path: str | Path) -> "PILImage.Image":
    """The DICOM image at ``path`` as an 8-bit Pillow image ("L" or "RGB"); see the module."""
    from PIL import Image
    from pydicom.pixels import apply_modality_lut, convert_color_space

    path = Path(path)
    ds = _header(path, pixels=True)
    if "PixelData" not in ds:
        raise ImageFault("DICOM without pixel data (a report or structured document?)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageFault(f"multi-frame DICOM ({frames} frames): biodl reads one image per file; save the frames as "
                         "separate files")
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
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 3:
        if photometric.startswith("YBR"):
            arr = convert_color_space(arr, photometric, "RGB")
        if arr.dtype != np.uint8:
            bits = int(ds.get("BitsStored", 16))
            arr = np.clip(np.round(arr.astype(np.float64) / (2 ** bits - 1) * 255), 0, 255)
        return Image.fromarray(arr.astype(np.uint8), "RGB")
    if arr.ndim != 2:
        raise ImageFault(f"unexpected DICOM pixel array of shape {arr.shape}")
    y = _window(apply_modality_lut(arr, ds).astype(np.float64), ds)
    if photometric == "MONOCHROME1":
        y = 1.0 - y
    return Image.fromarray(np.round(y * 255).astype(np.uint8), "L")
