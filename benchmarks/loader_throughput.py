"""Training batches delivered from the disk cache (224 x 224 uint8 RGB, batch 256), in one
process: the plain loader (a DataLoader in this thread, one ``pread`` per run of rows into a new
array per batch), biodl's loader (the threaded prefetcher reading into a ring of buffers
allocated once), and, as the physical limit here, a plain memory copy of the same bytes (and
the shuffled in-memory gather a training batch would need). The cache file is read once first,
so all of them work from the page cache. The methods take turns, epoch by epoch, and each is
scored by its median epoch (this machine's speed drifts).

    python benchmarks/loader_throughput.py [--images 1536] [--epochs 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from biodl.data.arrays import ImageDataset, ImageSet
from biodl.data.cache import DiskArray
from biodl.engine.loaders import TensorBatches, TrainLoader, prefetch_threads

SIDE, BATCH = 224, 256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1536)
    ap.add_argument("--epochs", type=int, default=8)
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
        source = np.asarray(DiskArray(path))  # warms the page cache too
        target = np.zeros((BATCH, SIDE, SIDE, 3), np.uint8)
        order = np.random.default_rng(1)

        ours = TrainLoader(data, BATCH, seed=0)
        plain = TrainLoader(data, BATCH, seed=0)
        plain.loader = DataLoader(data, sampler=TensorBatches(plain.sampler, BATCH), batch_size=None)

        def epochs_of(loader: TrainLoader) -> Callable[[int], int]:
            def one(epoch: int) -> int:
                loader.set_epoch(epoch)
                return sum(len(x) for x, _ in loader)
            return one

        def copy(_: int) -> int:
            for start in order.permutation(args.images // BATCH) * BATCH:
                np.copyto(target, source[start:start + BATCH])
            return args.images // BATCH * BATCH

        def gather(_: int) -> int:  # the same bytes in shuffled order: the rows a training batch needs
            perm = order.permutation(args.images)
            for start in range(0, args.images - BATCH + 1, BATCH):
                np.take(source, perm[start:start + BATCH], axis=0, out=target)
            return args.images // BATCH * BATCH

        methods = {"plain loader (DataLoader, this thread)": epochs_of(plain),
                   f"biodl loader (prefetcher, {prefetch_threads()} threads, ring)": epochs_of(ours),
                   "memory copy (limit)": copy, "memory gather, shuffled rows": gather}
        rates: dict[str, list[float]] = {k: [] for k in methods}
        for epoch in range(args.epochs):
            for name, one in methods.items():
                t = time.perf_counter()
                n = one(epoch)
                rates[name].append(n / (time.perf_counter() - t))
    ips = {k: statistics.median(v) for k, v in rates.items()}
    limit = ips["memory copy (limit)"]
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}; {args.images} images of {SIDE}x{SIDE}x3 uint8, batch "
          f"{BATCH}, median of {args.epochs} epochs")
    for name, v in ips.items():
        print(f"  {name:46s} {v:9.0f} images/s  {v * row / 1e9:6.2f} GB/s  {v / limit:6.1%} of the copy")
    plain, ours = list(ips.values())[:2]
    print(f"biodl loader / plain loader: {ours / plain:.2f}x; target: biodl's loader >= 50% of the copy bandwidth")


if __name__ == "__main__":
    main()
