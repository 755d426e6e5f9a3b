"""Stain normalisation of H&E images: Reinhard and Macenko.

- **Reinhard** (Reinhard et al. 2001): each channel of the image in CIE L*a*b* is shifted and
  scaled to the reference's mean and standard deviation, over tissue pixels only.
- **Macenko** (Macenko et al. 2009): in optical density (OD = -log10(I / 255)), the two stain
  vectors (haematoxylin, eosin) are the robust extremes (1st and 99th percentile of the angle)
  of the tissue pixels projected onto the plane of the two main eigenvectors; each pixel's
  stain concentrations are found by least squares and re-rendered with the reference's stain
  vectors, their 99th percentiles matched to the reference's. The part of a pixel's OD that the
  two stains do not explain is kept as it is (the original method drops it), so the reference
  tile maps to itself.

A :class:`StainReference` is fitted on a reference tile once and is JSON-able. The built-in
reference is a tissue tile of the embedded CMU-1 slide (see :func:`builtin_reference`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import DataError, ImageFault
from ..io import read_json
from .images import open_image

__all__ = [
    "OD_BACKGROUND", "BUILTIN_TILE", "macenko_stains", "StainReference", "normalize", "builtin_reference", "METHODS",
    "load_reference", "StainNormalizer", "MIN_STAIN_ANGLE",
]


#: optical density below which a pixel counts as background (glass) in Macenko's method
OD_BACKGROUND = 0.15
#: the built-in reference tile: its top-left corner (level-0 pixels) in the embedded slide, side 256
BUILTIN_TILE = (1122, 673)


#: the optical density of each uint8 intensity (I = 0 kept finite): a lookup, not a log per pixel
_OD = -np.log10(np.maximum(np.arange(256, dtype=np.float64), 1.0) / 255.0)


def _od(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> optical density (..., 3) float64."""
    return _OD[rgb]


def _tissue(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) pixels -> (N,) bool: stained enough in every channel to be tissue."""
    return (_od(rgb) > OD_BACKGROUND).all(axis=-1)


def _concentrations(stains: np.ndarray, od: np.ndarray) -> np.ndarray:
    """Least-squares concentrations (2, N) of (N, 3) optical densities in the two ``stains``
    (3, 2): the pseudo-inverse once, then one product (lstsq per call is several times slower)."""
    return np.linalg.pinv(stains) @ od.T


def macenko_stains(rgb: np.ndarray, alpha: float = 1.0, where: str = "image",
                   od: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(3, 2) unit stain vectors (columns: haematoxylin, eosin) in OD space, and the 99th
    percentile (2,) of each stain's concentration, from the tissue pixels of an (H, W, 3) image
    (``od``: its (H * W, 3) optical densities, when the caller has them already)."""
    od = _od(rgb.reshape(-1, 3)) if od is None else od
    od = od[(od > OD_BACKGROUND).all(axis=-1)]
    if len(od) < 100:
        raise DataError(where, f"too little stained tissue for Macenko's method ({len(od)} pixels)")
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, [2, 1]]  # the two largest eigenvalues' eigenvectors
    plane = plane * np.where(plane[0] < 0, -1, 1)  # a consistent sign: positive red OD
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    stains = np.column_stack([v1, v2] if v1[0] > v2[0] else [v2, v1])  # haematoxylin: the larger red OD
    stains /= np.linalg.norm(stains, axis=0, keepdims=True)
    return stains, np.percentile(_concentrations(stains, od), 99, axis=1)


def _lab_stats(rgb: np.ndarray, lab: np.ndarray | None = None,
               tissue: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """L*a*b* mean and std (3,) of an (H, W, 3) image's tissue pixels (of all its pixels when
    fewer than 100 are tissue); ``lab`` (the image in L*a*b*) and ``tissue`` (its (H * W,) mask),
    when the caller has them already."""
    from skimage.color import rgb2lab

    px = rgb.reshape(-1, 3)
    lab = rgb2lab(px.astype(np.float64) / 255.0) if lab is None else lab.reshape(-1, 3)
    tissue = _tissue(px) if tissue is None else tissue
    lab = lab[tissue] if tissue.sum() >= 100 else lab
    return lab.mean(axis=0), lab.std(axis=0) + 1e-6


#: a number in a stain reference: a finite int or float (not a bool, a string or null)
_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
#: the least angle (degrees) between the haematoxylin and eosin vectors: closer, they are one stain
MIN_STAIN_ANGLE = 5.0


class StainReference(BaseModel):
    """What a normaliser matches an image to: the reference's Macenko stain vectors (3, 2) and
    concentration percentiles (2,), and its L*a*b* mean and std (3,) for Reinhard's method.
    Checked when made: finite numbers of those shapes, unit stain vectors of non-negative optical
    density at least :data:`MIN_STAIN_ANGLE` degrees apart (a black or one-colour tile gives one
    vector twice), positive concentrations and standard deviations, L* in [0, 100]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stains: list[list[_Number]] = Field(min_length=3, max_length=3)
    max_conc: list[_Number] = Field(min_length=2, max_length=2)
    lab_mean: list[_Number] = Field(min_length=3, max_length=3)
    lab_std: list[_Number] = Field(min_length=3, max_length=3)

    @model_validator(mode="after")
    def _plausible(self) -> "StainReference":
        v = np.asarray(self.stains, dtype=np.float64)
        if v.shape != (3, 2):
            raise ValueError("stains must be 3 x 2 (rows: R, G, B optical density; columns: haematoxylin, eosin)")
        norms = np.linalg.norm(v, axis=0)
        if (np.abs(norms - 1) > 1e-3).any() or (v < -0.05).any():  # a fitted vector may dip just below 0
            raise ValueError("each stain vector must be a unit vector of non-negative optical densities")
        angle = np.degrees(np.arccos(np.clip(v[:, 0] @ v[:, 1], -1, 1)))
        if angle < MIN_STAIN_ANGLE:
            raise ValueError(f"the haematoxylin and eosin vectors are {angle:.1f} degrees apart (one stain: a "
                             "black, blank or one-colour reference?)")
        if min(self.max_conc) <= 0 or min(self.lab_std) <= 0:
            raise ValueError("max_conc and lab_std must be positive")
        if not 0 <= self.lab_mean[0] <= 100:
            raise ValueError(f"lab_mean's L* is {self.lab_mean[0]:g}, outside [0, 100]")
        return self

    @classmethod
    def fit(cls, rgb: np.ndarray, where: str = "reference") -> "StainReference":
        """The reference of an (H, W, 3) uint8 tile; a tile it cannot be fitted on is a DataError."""
        stains, max_conc = macenko_stains(rgb, where=where)
        mean, std = _lab_stats(rgb)
        return cls.from_dict({"stains": stains.tolist(), "max_conc": max_conc.tolist(), "lab_mean": mean.tolist(),
                              "lab_std": std.tolist()}, where)

    @classmethod
    def from_dict(cls, d: Any, where: str | Path = "stain reference") -> "StainReference":
        """A reference from its JSON form, checked (a DataError naming ``where`` and the fault)."""
        from ..config import validation_problem

        try:
            return cls.model_validate(d)
        except ValidationError as exc:
            raise DataError(where, f"is not a usable stain reference: {validation_problem(exc)}") from None

    def to_dict(self) -> dict:
        return self.model_dump()


def normalize(rgb: np.ndarray, reference: StainReference, method: str = "macenko", where: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 H&E image -> the same with the reference's stain colours (``macenko`` or
    ``reinhard``). Background (glass) stays as it is under Reinhard; Macenko re-renders every
    pixel from its stain concentrations."""
    if method == "reinhard":
        from skimage.color import lab2rgb, rgb2lab

        lab = rgb2lab(rgb.astype(np.float64) / 255.0)
        tissue = _tissue(rgb.reshape(-1, 3))
        mean, std = _lab_stats(rgb, lab, tissue)
        lab = (lab - mean) / std * np.asarray(reference.lab_std) + np.asarray(reference.lab_mean)
        out = lab2rgb(lab)  # colours shifted out of the sRGB gamut are clipped (skimage warns; expected)
        out = np.where(tissue.reshape(rgb.shape[:2])[..., None], out * 255.0, rgb)
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    if method != "macenko":
        raise DataError(where, f"unknown stain normalisation {method!r}; known: macenko, reinhard")
    od = _od(rgb.reshape(-1, 3))
    stains, max_conc = macenko_stains(rgb, where=where, od=od)
    conc = _concentrations(stains, od)  # (2, N)
    residual = od.T - stains @ conc  # what the two stains do not explain (out of their plane): kept
    conc *= (np.asarray(reference.max_conc) / max_conc)[:, None]
    out = 255.0 * 10 ** (-(np.asarray(reference.stains) @ conc + residual))
    return np.clip(np.round(out.T), 0, 255).astype(np.uint8).reshape(rgb.shape)


def builtin_reference() -> StainReference:
    """The reference fitted on a 256 px tissue tile of the embedded CMU-1 slide at level 0."""
    from ..datasets import embedded_path
    from .wsi import open_slide

    with open_slide(embedded_path("cmu1-small-region")) as slide:
        tile = slide.read_level(*BUILTIN_TILE, 256, 256)
    return StainReference.fit(tile, where="the built-in stain reference")


METHODS = ("macenko", "reinhard")


def load_reference(spec: str | Path | None) -> StainReference:
    """The stain reference named by ``spec``: ``None`` or ``builtin`` (:func:`builtin_reference`),
    a JSON file written from :meth:`StainReference.to_dict`, or a reference tile (PNG, JPEG, TIFF)
    to fit one on. Anything else is a one-line ``DataError`` naming the file."""
    if spec is None or str(spec) == "builtin":
        return builtin_reference()
    path = Path(spec)
    if not path.is_file():
        raise DataError(path, "no such stain reference (a reference tile, a reference JSON, or 'builtin')")
    if path.suffix.lower() == ".json":
        return StainReference.from_dict(read_json(path, DataError), path)
    try:
        with open_image(path) as img:  # the image readers' checks, the pixel limit among them
            rgb = np.asarray(img.convert("RGB"))
    except ImageFault as fault:
        raise DataError(path, f"is not a usable reference tile ({fault.problem})") from None
    return StainReference.fit(rgb, where=str(path))


class StainNormalizer:
    """Normalise batches of H&E tiles to one reference: ``normalizer(images)`` maps (N, H, W, 3)
    uint8 to the same; a tile with too little stained tissue for the method (mostly glass) is
    left as it is and counted in ``skipped``."""

    def __init__(self, method: str, reference: StainReference) -> None:
        if method not in METHODS:
            raise DataError("stain", f"unknown stain normalisation {method!r}; known: {', '.join(METHODS)}, none")
        self.method, self.reference, self.skipped = method, reference, 0

    @classmethod
    def create(cls, method: str | None, reference: str | Path | None = None) -> "StainNormalizer | None":
        """The normaliser for ``method`` (``none``/None: no normalisation) and reference spec (see
        :func:`load_reference`)."""
        if method in (None, "none"):
            return None
        if method not in METHODS:
            raise DataError("stain", f"unknown stain normalisation {method!r}; known: {', '.join(METHODS)}, none")
        return cls(method, load_reference(reference))

    @classmethod
    def from_dict(cls, d: dict | None, where: str | Path = "stain") -> "StainNormalizer | None":
        """The normaliser a run recorded (:meth:`to_dict`), checked (a DataError naming ``where``)."""
        if not d:
            return None
        if not isinstance(d, dict) or d.get("method") not in METHODS or set(d) != {"method", "reference"}:
            raise DataError(where, f"is not a stain normalisation record (method: {', '.join(METHODS)}; reference)")
        return cls(d["method"], StainReference.from_dict(d["reference"], where))

    def to_dict(self) -> dict:
        """JSON-able: the method and the fitted reference (what a run records and a cache key holds)."""
        return {"method": self.method, "reference": self.reference.to_dict()}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> the same, normalised image by image on a thread pool (NumPy
        releases the GIL in the work on whole images), with a progress bar from 1,000 images."""
        import os
        import warnings
        from concurrent.futures import ThreadPoolExecutor

        from ..progress import track

        out = np.empty_like(images)

        def one(i: int) -> bool:
            try:
                out[i] = normalize(images[i], self.reference, self.method)
                return False
            except DataError:  # too little tissue to fit stain vectors on: glass stays glass
                out[i] = images[i]
                return True

        # the filter is set here, in the calling thread, for the workers too: catch_warnings is
        # process-wide state, which threads entering and leaving it at once would scramble
        with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            warnings.filterwarnings("ignore", "Conversion from CIE-LAB", UserWarning)  # out-of-gamut colours clipped
            self.skipped += sum(track(pool.map(one, range(len(images))), len(images),
                                      f"stain normalisation ({self.method})", disable=len(images) < 1000))
        return out
