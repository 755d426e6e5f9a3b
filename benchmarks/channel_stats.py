"""The normalisation statistics every image run computes over its training rows before the first
step: ``biodl.data.transforms.channel_stats`` (a 256-bin histogram per channel, exact integer
sums from the counts) against summing the pixels widened to int64 (biodl's earlier code, and
what ``images.astype(np.int64).sum(...)`` does). Same rows, read from the disk cache as in
training (a weighted draw repeats rows; the set itself is in the page cache after the first
read), one process; the two must give the same numbers.

    python benchmarks/channel_stats.py [--images 2000] [--rows 6000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from biodl.data.cache import DiskArray
from biodl.data.transforms import channel_stats


def widened_sums(images, rows: np.ndarray, chunk: int = 64) -> tuple[list[float], list[float]]:
    """The baseline: per-chunk int64 copies of the pixels, summed along the pixel axis."""
    c = images.shape[-1]
    total, squares, n = np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64), 0
    for start in range(0, len(rows), chunk):
        block = np.asarray(images[np.sort(rows[start:start + chunk])]).reshape(-1, c).astype(np.int64)
        total += block.sum(axis=0)
        squares += (block * block).sum(axis=0)
        n += len(block)
    mean = total / n
    return (mean / 255).tolist(), np.maximum(np.sqrt(np.maximum(squares / n - mean**2, 0)) / 255, 1e-3).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000, help="224 x 224 RGB images in the cache file")
    ap.add_argument("--rows", type=int, default=6000, help="training rows drawn (with repeats)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        np.save(path, rng.integers(0, 256, (args.images, 224, 224, 3), dtype=np.uint8))
        images = DiskArray(path)
        rows = rng.integers(0, args.images, args.rows)
        gb = args.rows * 224 * 224 * 3 / 1e9
        channel_stats(images, rows[:256])  # page cache and first-call costs out of the timings
        times, results = {}, {}
        for name, fn in (("int64 sums", widened_sums), ("histogram", channel_stats)):
            t = time.perf_counter()
            results[name] = fn(images, rows)
            times[name] = time.perf_counter() - t
    same = np.allclose(results["int64 sums"], results["histogram"], rtol=1e-12, atol=0)
    print(f"channel statistics of {args.rows} rows of 224x224x3 ({gb:.2f} GB) from a {args.images}-image disk cache")
    print(f"  {'method':<12} {'s':>7} {'GB/s':>6}")
    for name, t in times.items():
        print(f"  {name:<12} {t:7.2f} {gb / t:6.2f}")
    print(f"  speed-up {times['int64 sums'] / times['histogram']:.1f}x; same mean and std: {same}")


if __name__ == "__main__":
    main()
