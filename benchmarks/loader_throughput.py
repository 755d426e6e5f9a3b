"""Training batches delivered from the disk cache (224 x 224 uint8 RGB, batch 256), in one
process: today's loader (one thread, ``pread`` per batch), the threaded prefetcher (batches read
ahead by threads in the loader's order, into new arrays or into a ring of buffers allocated once),
and a plain memory copy of the same bytes (the physical
limit here). The cache file is read once first, so all three work from the page cache.

    python benchmarks/loader_throughput.py [--images 1536] [--epochs 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from biodl.data.arrays import ImageDataset, ImageSet
from biodl.data.cache import DiskArray
from biodl.engine.loaders import TrainLoader
from biodl.engine.prefetch import Prefetcher, batch_fetcher, ring_fetcher

SIDE, BATCH = 224, 256


def run(loader: TrainLoader, epochs: int, prefetch: int, ring: bool) -> tuple[float, int]:
    n, t = 0, time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        depth = 2 * prefetch
        fetch = ring_fetcher(loader.loader.dataset, BATCH, depth + 2) if ring else batch_fetcher(loader.loader.dataset)
        batches = Prefetcher(loader.loader.sampler, fetch, depth, workers=prefetch) if prefetch else iter(loader)
        for x, _ in batches:
            n += len(x)
    return time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1536)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    row = SIDE * SIDE * 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(args.images, SIDE, SIDE, 3))
        rng = np.random.default_rng(0)
        for i in range(0, args.images, 256):
            images[i:i + 256] = rng.integers(0, 256, images[i:i + 256].shape, dtype=np.uint8)
        images.flush()
        del images
        data = ImageDataset(ImageSet(DiskArray(path), np.zeros(args.images, np.int64), ["a", "b"]))
        np.asarray(DiskArray(path))  # warm the page cache
        results = {}
        for name, prefetch, ring in (("loader (one thread)", 0, False),
                                     (f"prefetcher, new arrays ({args.workers} thr.)", args.workers, False),
                                     (f"prefetcher, ring ({args.workers} thr.)", args.workers, True)):
            seconds, n = run(TrainLoader(data, BATCH, seed=0), args.epochs, prefetch, ring)
            results[name] = (n / seconds, n * row / seconds / 1e9)
        source = np.asarray(DiskArray(path))
        target = np.empty((BATCH, SIDE, SIDE, 3), np.uint8)
        t, n = time.perf_counter(), 0
        order = np.random.default_rng(1)
        for _ in range(args.epochs):
            for start in order.permutation(args.images // BATCH) * BATCH:
                np.copyto(target, source[start:start + BATCH])
                n += BATCH
        seconds = time.perf_counter() - t
        results["memory copy (limit)"] = (n / seconds, n * row / seconds / 1e9)
        t, n = time.perf_counter(), 0
        for _ in range(args.epochs):  # the same bytes in shuffled order: the rows a training batch needs
            perm = order.permutation(args.images)
            for start in range(0, args.images - BATCH + 1, BATCH):
                np.take(source, perm[start:start + BATCH], axis=0, out=target)
                n += BATCH
        seconds = time.perf_counter() - t
        results["memory gather, shuffled rows"] = (n / seconds, n * row / seconds / 1e9)
    limit = results["memory copy (limit)"][1]
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}; {args.images} images of {SIDE}x{SIDE}x3 uint8, batch "
          f"{BATCH}, {args.epochs} epochs")
    for name, (ips, gbs) in results.items():
        print(f"  {name:34s} {ips:9.0f} images/s  {gbs:6.2f} GB/s  {gbs / limit:6.1%} of the copy")
    print("target: the prefetcher >= 50% of the copy bandwidth")


if __name__ == "__main__":
    main()
