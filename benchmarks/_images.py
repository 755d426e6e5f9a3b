"""Synthetic fundus-like PNGs in an ImageFolder tree, shared by the image benchmarks.

Each image is a bright, shaded disc on a dark background with low-frequency colour variation
and pixel noise, so that PNG files compress and decode like photographs rather than like
flat colour or pure noise (about 90 KB per 224 x 224 image).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

GRADES = ["No_DR", "Mild", "Moderate", "Severe", "Proliferate_DR"]
#: the Kaggle set's grade shares (1805, 370, 999, 193, 295 of 3662)
SHARES = np.array([1805, 370, 999, 193, 295]) / 3662


def fundus(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1
    r = np.sqrt(xx**2 + yy**2)
    disc = np.clip((0.95 - r) * 20, 0, 1)[..., None]
    low = rng.random((6, 6, 3))
    ups = np.kron(low, np.ones((size // 6 + 1, size // 6 + 1, 1)))[:size, :size]
    base = np.array([200, 90, 40]) * (1 - 0.5 * r[..., None]) * (0.7 + 0.3 * ups)
    img = disc * base + rng.normal(0, 6, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_tree(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``root/<grade>/<i>.png``, n images in the Kaggle grade proportions (kept when already there)."""
    from PIL import Image

    done = root / f".complete-{n}-{size}-{seed}"
    if done.exists():
        return root
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(GRADES), size=n, p=SHARES)
    labels[: len(GRADES)] = np.arange(len(GRADES))  # no empty class
    seeds = rng.integers(0, 2**32, n)
    for g in GRADES:
        (root / g).mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        img = fundus(np.random.default_rng(seeds[i]), size)
        Image.fromarray(img).save(root / GRADES[labels[i]] / f"{i:05d}.png")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(n)))
    done.touch()
    return root
