"""Whole-slide images, read at a physical resolution.

A slide is read through OpenSlide (Aperio SVS, Hamamatsu NDPI, MIRAX, Philips and generic
pyramidal TIFF...; the ``openslide-bin`` wheel brings the library) or, for a plain TIFF, PNG or
JPEG, as a one-level slide. Regions are asked for in micrometres per pixel: they are read from
the nearest level that is at least as fine and resampled to the asked resolution, so a 224 px
tile at 0.5 um/px covers the same tissue on every scanner. Coordinates are level-0 pixels.
Tissue is found by :mod:`biodl.data.tissue`, tiles are cut by :mod:`biodl.data.tiles`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MPP_RANGE
from ..errors import DataError, ImageFault, path_problem

__all__ = [
    "PLAIN", "STRIP_PIXELS", "THUMBNAIL_READ_PIXELS", "MPP_RANGE", "check_mpp", "Slide", "open_slide",
]


#: plain image files opened as one-level slides (no resolution metadata unless given)
PLAIN = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


#: pixels of a pyramid level read at once while making a thumbnail (about 200 MB of RGB)
STRIP_PIXELS = 1 << 26
#: the most pixels of a pyramid level a thumbnail may read (a 32k x 32k level; about a minute): a
#: slide whose coarsest level is larger (a flat, untiled TIFF of a whole slide) is refused
THUMBNAIL_READ_PIXELS = 1 << 30


def check_mpp(value: float, where: str | Path) -> float:
    """``value`` when it is a resolution a slide or tile may have (:data:`MPP_RANGE` micrometres
    per pixel, finite); else a DataError naming ``where``."""
    lo, hi = MPP_RANGE
    if not (isinstance(value, (int, float)) and np.isfinite(value) and lo <= value <= hi):
        raise DataError(where, f"a resolution must be {lo:g} to {hi:g} micrometres per pixel (got {value:.4g})")
    return float(value)


@dataclass
class Slide:
    """An open slide. ``levels``: (width, height) of each pyramid level, level 0 the finest;
    ``downsamples``: each level's factor against level 0; ``mpp``: micrometres per level-0
    pixel (None when the file does not say and none was given)."""

    path: Path
    vendor: str
    levels: list[tuple[int, int]]
    downsamples: list[float]
    mpp: float | None
    objective_power: float | None = None
    _handle: Any = field(default=None, repr=False)
    #: why the file's own resolution was not used (absent, or a value no slide has), when it was not
    mpp_note: str | None = None  # an openslide.OpenSlide, or the decoded array of a plain image

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) at level 0."""
        return self.levels[0]

    def info(self) -> dict[str, Any]:
        """What ``biodl wsi info`` prints."""
        return {"file": str(self.path), "vendor": self.vendor, "width": self.levels[0][0],
                "height": self.levels[0][1], "mpp": self.mpp, "objective_power": self.objective_power,
                "levels": [{"level": i, "width": w, "height": h, "downsample": round(d, 4)}
                           for i, ((w, h), d) in enumerate(zip(self.levels, self.downsamples, strict=True))]}

    def need_mpp(self) -> float:
        if self.mpp is None:
            raise DataError(self.path, f"{self.mpp_note or 'has no resolution metadata'} (microns per pixel); give it "
                                       "with --mpp, or data.tiles.slide_mpp in a training config (e.g. 0.25 for a "
                                       "40x scan, 0.5 for 20x)")
        return self.mpp

    def read_level(self, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray:
        """(height, width, 3) uint8 RGB of the region whose top-left corner is (x, y) in level-0
        pixels, at pyramid ``level``; outside the slide is white."""
        if isinstance(self._handle, np.ndarray):
            out = np.full((height, width, 3), 255, dtype=np.uint8)
            img = self._handle
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + width, img.shape[1]), min(y + height, img.shape[0])
            if x1 > x0 and y1 > y0:
                out[y0 - y:y1 - y, x0 - x:x1 - x] = img[y0:y1, x0:x1]
            return out
        try:
            region = self._handle.read_region((int(x), int(y)), int(level), (int(width), int(height)))
        except Exception as exc:  # openslide.OpenSlideError: a damaged tile, a truncated file
            raise DataError(self.path, f"cannot read the region at ({x}, {y}), level {level}: {exc}") from None
        rgba = np.asarray(region)
        if rgba[..., 3].min() == 255:  # all inside the scanned area: the common case, no compositing
            return np.ascontiguousarray(rgba[..., :3])
        alpha = rgba[..., 3:4].astype(np.float32) / 255  # transparent (outside the scanned area): white
        return (rgba[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)

    def best_level(self, downsample: float) -> int:
        """The coarsest level that is still at least as fine as ``downsample`` (against level 0)."""
        fine = [i for i, d in enumerate(self.downsamples) if d <= downsample * (1 + 1e-6)]
        return max(fine, key=lambda i: self.downsamples[i]) if fine else 0

    def read(self, x: int, y: int, size: int, mpp: float) -> np.ndarray:
        """(size, size, 3) uint8 tile at ``mpp`` micrometres per pixel whose top-left corner is
        (x, y) in level-0 pixels: read from the nearest finer level and resampled (area
        averaging when shrinking)."""
        from PIL import Image

        scale = mpp / self.need_mpp()  # level-0 pixels per output pixel
        side0 = size * scale  # the tile's side in level-0 pixels
        level = self.best_level(scale)
        d = self.downsamples[level]
        side = max(1, int(round(side0 / d)))
        region = self.read_level(x, y, side, side, level)
        if side == size:
            return region
        return np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.BOX if side > size
                                                         else Image.Resampling.BILINEAR))

    def thumbnail(self, max_side: int = 1024) -> tuple[np.ndarray, float]:
        """(h, w, 3) uint8 image of the whole slide, its longer side at most ``max_side``, and
        its downsample against level 0."""
        from PIL import Image

        w0, h0 = self.levels[0]
        factor = max(1.0, max(w0, h0) / max_side)
        size = (max(1, int(round(w0 / factor))), max(1, int(round(h0 / factor))))
        if isinstance(self._handle, np.ndarray):
            img = Image.fromarray(self._handle)
            img.thumbnail(size, Image.Resampling.BOX)
            return np.asarray(img), w0 / img.width
        stored = self._stored_thumbnail(size)
        if stored is not None:
            return stored, w0 / size[0]
        level = self.best_level(factor)
        lw, lh = self.levels[level]
        if lw * lh > THUMBNAIL_READ_PIXELS:
            raise DataError(self.path, f"has no pyramid level small enough for a thumbnail (the coarsest it would "
                                       f"read is {lw} x {lh} pixels, over {THUMBNAIL_READ_PIXELS:,}); convert it to a "
                                       "pyramidal TIFF (e.g. vips tiffsave --tile --pyramid)")
        # in bands of whole thumbnail rows, so that a slide without a coarse level (one huge level)
        # is shrunk a band at a time, never held whole
        rows_per_band = max(1, int(STRIP_PIXELS / lw / (lh / size[1])))
        out = np.empty((size[1], size[0], 3), dtype=np.uint8)
        d = self.downsamples[level]
        for r0 in range(0, size[1], rows_per_band):
            r1 = min(size[1], r0 + rows_per_band)
            y0, y1 = int(round(r0 * h0 / size[1])), int(round(r1 * h0 / size[1]))  # level-0 rows of the band
            band = self.read_level(0, y0, lw, max(1, int(round((y1 - y0) / d))), level)
            out[r0:r1] = np.asarray(Image.fromarray(band).resize((size[0], r1 - r0), Image.Resampling.BOX))
        return out, w0 / size[0]

    def _stored_thumbnail(self, size: tuple[int, int]) -> np.ndarray | None:
        """The scanner's own thumbnail (an associated image of most vendor formats) resized to
        ``size``, when it shows the whole slide (same aspect ratio within 1%) and is at least as
        large: no read of the pyramid at all."""
        from PIL import Image

        try:
            img = self._handle.associated_images.get("thumbnail")
            if img is not None:
                img.load()
        except Exception as exc:  # noqa: BLE001 - OpenSlideError: a damaged stored thumbnail
            raise DataError(self.path, f"its stored thumbnail cannot be read ({str(exc)[:120]})") from None
        if img is None or img.width < size[0] or img.height < size[1]:
            return None
        w0, h0 = self.levels[0]
        if abs(img.width / img.height - w0 / h0) > 0.01 * w0 / h0:
            return None
        return np.asarray(img.convert("RGB").resize(size, Image.Resampling.BOX))

    def close(self) -> None:
        if self._handle is not None and not isinstance(self._handle, np.ndarray):
            self._handle.close()
        self._handle = None

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _resolution(value: Any) -> tuple[float | None, str | None]:
    """A file's resolution property -> (micrometres per pixel, or None; why not, or None)."""
    if value is None:
        return None, None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None, f"has resolution metadata {str(value)[:30]!r}, not a number"
    lo, hi = MPP_RANGE
    if not (np.isfinite(out) and lo <= out <= hi):
        return None, f"has resolution metadata {out:.4g}, not a resolution a slide has ({lo:g} to {hi:g})"
    return out, None


def _power(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) and 0.1 <= out <= 400 else None


def _check_file(path: Path) -> None:
    import stat

    if (problem := path_problem(path)) is not None:
        raise DataError(path, f"cannot open the slide file: {problem}")
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise DataError(path, "is a folder, not a slide file")
    if not stat.S_ISREG(mode):
        raise DataError(path, "is not a regular file (a pipe or a device?)")
    if path.stat().st_size == 0:
        raise DataError(path, "is empty")


def open_slide(path: str | Path, mpp: float | None = None, override: bool = False) -> Slide:
    """Open a whole-slide image (or a plain image as a one-level slide). ``mpp``: micrometres per
    level-0 pixel for a file that does not record a usable one (a fallback); with ``override``,
    for every file. Faults are one-line ``DataError``s."""
    path = Path(path)
    _check_file(path)
    if mpp is not None:
        check_mpp(mpp, "--mpp")
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        return _plain(path, mpp)
    import openslide

    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except Exception:  # noqa: BLE001 - detect_format raises on some unreadable files
        vendor = None
    if vendor is None:
        if path.suffix.lower() in PLAIN:  # a plain (untiled) TIFF
            return _plain(path, mpp)
        raise DataError(path, f"is not a slide OpenSlide can read (SVS, NDPI, MRXS, SCN, pyramidal TIFF...) nor a "
                              f"PNG, JPEG or TIFF image{_sniffed(path)}")
    try:
        handle = openslide.OpenSlide(str(path))
        props = handle.properties
        levels = [(int(w), int(h)) for w, h in handle.level_dimensions]
        downsamples = [float(d) for d in handle.level_downsamples]
        own, note = _resolution(props.get(openslide.PROPERTY_NAME_MPP_X))
        power = _power(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
    except Exception as exc:  # noqa: BLE001 - OpenSlideError, OpenSlideUnsupportedFormatError
        raise DataError(path, f"is not a readable {vendor} slide ({str(exc)[:120]})") from None
    chosen = mpp if mpp is not None and (override or own is None) else own
    return Slide(path, vendor, levels, downsamples, chosen, power, handle, None if chosen is not None else note)


def _sniffed(path: Path) -> str:
    """``" (it is a PNG file)"`` when the file's first bytes say what it is despite its name."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return ""
    for magic, kind in ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")):
        if head.startswith(magic):
            return f" (its content is a {kind} image: rename it to .{kind.lower()})"
    return ""


def _plain(path: Path, mpp: float | None) -> Slide:
    from .images import open_image

    try:
        with open_image(path) as img:  # the image readers' checks, the pixel limit among them
            if img.mode.startswith("I;16"):  # 16-bit greyscale: scaled to 8 bits, not clipped
                array = np.repeat((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)[..., None], 3, axis=2)
            elif img.mode in ("I", "F"):
                raise ImageFault(f"{img.mode} (32-bit) pixels; slides are 8-bit RGB")
            else:
                array = np.asarray(img.convert("RGB"))
    except ImageFault as fault:
        raise DataError(path, f"cannot be decoded as an image ({fault.problem})") from None
    h, w = array.shape[:2]
    return Slide(path, "image", [(w, h)], [1.0], mpp, None, array)
