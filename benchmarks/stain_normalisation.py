"""Stain normalisation speed: biodl's ``StainNormalizer`` against the textbook per-image loop.

The baseline is Macenko's method as it is usually written (and as biodl wrote it before): for each
image in turn, optical density by ``log10`` per pixel, computed twice, and the stain
concentrations by ``np.linalg.lstsq``, twice; Reinhard's converts the tissue pixels to L*a*b* and
then the whole image again. biodl looks the optical densities up in a 256-entry table, solves with
the stain matrix's pseudo-inverse once, converts to L*a*b* once, and normalises the images on a
thread pool. The script checks that both give the same pixels, then prints ms per tile and the
ratio. Tiles: 224 x 224 crops of the embedded CMU-1 slide (those with enough tissue for Macenko).

    python benchmarks/stain_normalisation.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from biodl.data.stain import OD_BACKGROUND, StainNormalizer, builtin_reference, macenko_stains
from biodl.data.wsi import open_slide
from biodl.datasets import embedded_path
from biodl.errors import DataError


def _od(rgb: np.ndarray) -> np.ndarray:
    return -np.log10(np.maximum(rgb.astype(np.float64), 1.0) / 255.0)


def _stains(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    px = rgb.reshape(-1, 3)
    od = _od(px)[(_od(px) > OD_BACKGROUND).all(axis=-1)]
    if len(od) < 100:
        raise DataError("image", "too little tissue")
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, [2, 1]]
    plane = plane * np.where(plane[0] < 0, -1, 1)
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [1, 99])
    v1, v2 = plane @ np.array([np.cos(lo), np.sin(lo)]), plane @ np.array([np.cos(hi), np.sin(hi)])
    stains = np.column_stack([v1, v2] if v1[0] > v2[0] else [v2, v1])
    stains /= np.linalg.norm(stains, axis=0, keepdims=True)
    return stains, np.percentile(np.linalg.lstsq(stains, od.T, rcond=None)[0], 99, axis=1)


def baseline_macenko(rgb: np.ndarray, ref) -> np.ndarray:
    stains, max_conc = _stains(rgb)
    od = _od(rgb.reshape(-1, 3))
    conc = np.linalg.lstsq(stains, od.T, rcond=None)[0]
    residual = od.T - stains @ conc
    conc *= (np.asarray(ref.max_conc) / max_conc)[:, None]
    out = 255.0 * 10 ** (-(np.asarray(ref.stains) @ conc + residual))
    return np.clip(np.round(out.T), 0, 255).astype(np.uint8).reshape(rgb.shape)


def baseline_reinhard(rgb: np.ndarray, ref) -> np.ndarray:
    from skimage.color import lab2rgb, rgb2lab

    px = rgb.reshape(-1, 3)
    tissue = (_od(px) > OD_BACKGROUND).all(axis=-1)
    lab_t = rgb2lab(px[tissue][None].astype(np.float64) / 255.0)[0]
    if len(lab_t) < 100:
        lab_t = rgb2lab(px[None].astype(np.float64) / 255.0)[0]
    mean, std = lab_t.mean(axis=0), lab_t.std(axis=0) + 1e-6
    lab = rgb2lab(rgb.astype(np.float64) / 255.0)
    out = lab2rgb((lab - mean) / std * np.asarray(ref.lab_std) + np.asarray(ref.lab_mean))
    out = np.where(tissue.reshape(rgb.shape[:2])[..., None], out * 255.0, rgb)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def baseline(images: np.ndarray, ref, method: str) -> np.ndarray:
    one = baseline_macenko if method == "macenko" else baseline_reinhard
    out = np.empty_like(images)
    for i, img in enumerate(images):
        try:
            out[i] = one(img, ref)
        except DataError:
            out[i] = img
    return out


def tiles() -> np.ndarray:
    with open_slide(embedded_path("cmu1-small-region")) as slide:
        crops = [slide.read_level(224 * (i % 9), 224 * (i // 9), 224, 224) for i in range(9 * 13)]
    kept = []
    for c in crops:
        try:
            macenko_stains(c)
            kept.append(c)
        except DataError:
            pass
    return np.stack(kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", "Conversion from CIE-LAB")
    images, ref = tiles(), builtin_reference()
    print(f"{len(images)} tissue tiles of 224 x 224; median of {args.rounds} rounds, alternating")
    for method in ("macenko", "reinhard"):
        times: dict[str, list[float]] = {"baseline": [], "biodl": []}
        for _ in range(args.rounds):
            t = time.perf_counter()
            want = baseline(images, ref, method)
            times["baseline"].append(time.perf_counter() - t)
            t = time.perf_counter()
            got = StainNormalizer(method, ref)(images)
            times["biodl"].append(time.perf_counter() - t)
            assert np.array_equal(want, got), f"{method}: biodl's pixels differ from the baseline's"
        ms = {k: 1000 * float(np.median(v)) / len(images) for k, v in times.items()}
        print(f"  {method:9s} baseline {ms['baseline']:6.2f} ms/tile   biodl {ms['biodl']:6.2f} ms/tile   "
              f"{ms['baseline'] / ms['biodl']:4.2f}x   (same pixels)")


if __name__ == "__main__":
    main()
