"""Tissue on a slide's thumbnail: Otsu's threshold on the saturation channel (which separates
stained tissue from the white glass better than grey levels), a morphological closing and
opening and the removal of small objects, as histolab and most pipelines do; pen marks left out
on request; the share of tissue under any square in O(1); and each tile's haematoxylin (nuclei)
density, to rank tiles by."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .wsi import Slide

__all__ = [
    "pen_mask", "tissue_mask", "TissueMap", "mask_overlay", "hematoxylin_score",
]


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx * xx + yy * yy <= radius * radius


def _drop_small(mask: np.ndarray, area: int, keep_border: bool = True) -> np.ndarray:
    """``mask`` without its connected components smaller than ``area`` pixels (with
    ``keep_border=False``, components touching the image border are kept whatever their size)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= area
    if not keep_border:
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep[edge] = True
    keep[0] = False
    return keep[labels]


def pen_mask(thumb: np.ndarray, radius: int = 2, min_stroke: float = 0.001) -> np.ndarray:
    """(h, w) bool: pixels of an (h, w, 3) uint8 thumbnail marked with pen ink, widened by
    ``radius`` pixels. Ink is blue or green (hues of 80 to 260 degrees with a saturation above
    0.3) or near black, in strokes of at least ``min_stroke`` of the thumbnail's area: scattered
    bluish pixels of haematoxylin-dark nuclei take those hues too, but never as a stroke."""
    from scipy import ndimage
    from skimage.color import rgb2hsv

    hsv = rgb2hsv(thumb[..., :3])
    ink = ((hsv[..., 0] > 80 / 360) & (hsv[..., 0] < 260 / 360) & (hsv[..., 1] > 0.3)) | (hsv[..., 2] < 0.15)
    ink = _drop_small(ink, max(1, int(min_stroke * ink.size)))
    return ndimage.binary_dilation(ink, _disk(radius)) if radius and ink.any() else ink


def tissue_mask(thumb: np.ndarray, min_object: float = 0.0005, radius: int = 2, pen: bool = False) -> np.ndarray:
    """(h, w) bool tissue mask of an (h, w, 3) uint8 thumbnail: Otsu's threshold on the HSV
    saturation, a closing then an opening with a disk of ``radius`` pixels, then tissue objects
    and holes smaller than ``min_object`` of the thumbnail's area removed (filled). ``pen``:
    pen-marked pixels (:func:`pen_mask`) are not tissue (found before Otsu's threshold, so ink
    does not move it)."""
    from scipy import ndimage
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    sat = rgb2hsv(thumb[..., :3])[..., 1]
    ink = pen_mask(thumb) if pen else np.zeros(sat.shape, dtype=bool)
    if ink.all() or np.ptp(sat[~ink]) == 0:
        return np.zeros(sat.shape, dtype=bool)
    mask = (sat > threshold_otsu(sat[~ink])) & ~ink
    if radius:
        se = _disk(radius)
        padded = np.pad(mask, radius, mode="edge")  # no border artefacts from the closing
        padded = ndimage.binary_opening(ndimage.binary_closing(padded, se), se)
        mask = padded[radius:-radius, radius:-radius] & ~ink
    area = max(1, int(min_object * mask.size))
    mask = _drop_small(mask, area)
    return ~_drop_small(~mask, area, keep_border=False) & ~ink


@dataclass
class TissueMap:
    """A slide's tissue mask on its thumbnail, and the share of tissue under any square of it."""

    thumb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool
    down: float  # the thumbnail's downsample against level 0
    integral: np.ndarray = field(repr=False)  # (h + 1, w + 1) summed-area table of the mask

    @classmethod
    def of(cls, slide: Slide, thumb_side: int = 512, pen: bool = False) -> "TissueMap":
        thumb, down = slide.thumbnail(thumb_side)
        mask = tissue_mask(thumb, pen=pen)
        return cls(thumb, mask, down, np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0))))

    def share(self, x: np.ndarray, y: np.ndarray, side0: float) -> np.ndarray:
        """(N,) share of tissue under the squares of side ``side0`` whose top-left corners are
        (x, y), all in level-0 pixels: box sums of the summed-area table, O(1) per square."""
        mh, mw = self.mask.shape
        c0 = np.clip(np.floor(x / self.down).astype(int), 0, mw - 1)
        r0 = np.clip(np.floor(y / self.down).astype(int), 0, mh - 1)
        c1 = np.clip(np.ceil((x + side0) / self.down).astype(int), c0 + 1, mw)
        r1 = np.clip(np.ceil((y + side0) / self.down).astype(int), r0 + 1, mh)
        s = self.integral
        return (s[r1, c1] - s[r0, c1] - s[r1, c0] + s[r0, c0]) / ((r1 - r0) * (c1 - c0))


def mask_overlay(thumb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The thumbnail with everything outside the tissue mask darkened: (h, w, 3) uint8."""
    return np.where(mask[..., None], thumb, (thumb * 0.3).astype(np.uint8))


def hematoxylin_score(tiles: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N,) mean haematoxylin optical density of each tile (Ruifrok and
    Johnston's colour deconvolution, as ``skimage.color.rgb2hed``): tiles dense with nuclei score
    highest; glass scores zero. Each channel's share of the haematoxylin density is looked up in
    a 256-entry table, so scoring costs three gathers per pixel (10x faster than ``rgb2hed``)."""
    from skimage.color import hed_from_rgb

    if not len(tiles):
        return np.zeros(0)
    od = np.log(np.maximum(np.arange(256) / 255.0, 1e-6)) / np.log(1e-6)  # rgb2hed's optical density scale
    r, g, b = ((od * hed_from_rgb[c, 0]).astype(np.float32) for c in range(3))  # each channel's part of H
    h = r.take(tiles[..., 0])
    h += g.take(tiles[..., 1])
    h += b.take(tiles[..., 2])
    return np.maximum(h, 0, out=h).mean(axis=(1, 2), dtype=np.float64)
