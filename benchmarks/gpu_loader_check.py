"""Correctness and speed of biodl's batch routes on one device (issue 18's device check; it
also runs on the CPU): rows of the disk cache and of an in-memory set fetched ahead by threads
into a ring of buffers (on CUDA: pinned, copied on a side stream), and the set resident on the
device (one gather per batch), each against the plain route (a DataLoader indexing the in-memory
set one batch at a time, into new memory), batch for batch over shuffled, weighted and resumed
epochs; then the delivered images/s of each at 224 x 224, batch 256.

    python benchmarks/gpu_loader_check.py [--device cuda] [--images 2048]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from biodl.data.arrays import ImageDataset, ImageSet
from biodl.data.cache import DiskArray
from biodl.engine.loaders import TensorBatches, TrainLoader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain(dataset: ImageDataset, batch_size: int, **kw) -> TrainLoader:
    """The plain route: a DataLoader over the in-memory set, one indexing call per batch, in the
    order of a TrainLoader's sampler (what biodl did before the ring)."""
    loader = TrainLoader(dataset, batch_size, **kw)
    loader.loader = DataLoader(dataset, sampler=TensorBatches(loader.sampler, batch_size), batch_size=None,
                               pin_memory=kw.get("device", torch.device("cpu")).type == "cuda")
    return loader


def check(device: torch.device, tmp: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (203, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, 203)
    np.save(tmp / "small.npy", images)
    disk = ImageDataset(ImageSet(DiskArray(tmp / "small.npy"), labels, list("abcde")))
    memory = ImageDataset(ImageSet(images, labels, list("abcde")))
    routes = {"disk, read ahead": disk, "memory, read ahead": memory, "resident": disk.resident(device)}
    for weights in (None, torch.linspace(0.1, 1, 203)):
        for name, ds in routes.items():
            got = TrainLoader(ds, 16, seed=7, device=device, weights=weights)
            ref = plain(memory, 16, seed=7, weights=weights)
            n = 0
            for epoch, start in ((0, 0), (1, 0), (1, 5)):
                got.set_epoch(epoch, start)
                ref.set_epoch(epoch, start)
                for (x, y), (xr, yr) in zip(got, ref, strict=True):
                    time.sleep(0.002)  # let the threads run ahead, as a training step would
                    assert x.device.type == device.type and y.device.type == device.type, (name, x.device)
                    assert torch.equal(x.cpu(), xr) and torch.equal(y.cpu(), yr), (name, epoch, n)
                    n += 1
            print(f"  {name:18s} {'weighted' if weights is not None else 'shuffled'}: {n} batches equal to "
                  "the plain route's")


def speed(device: torch.device, tmp: Path, n_images: int, rounds: int = 3) -> None:
    side, batch = 224, 256
    path = tmp / "big.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n_images, side, side, 3))
    for i in range(0, n_images, 256):
        arr[i:i + 256] = np.random.default_rng(i).integers(0, 256, arr[i:i + 256].shape, dtype=np.uint8)
    arr.flush()
    del arr
    labels = np.zeros(n_images, np.int64)
    disk = ImageDataset(ImageSet(DiskArray(path), labels, ["a", "b"]))
    np.asarray(DiskArray(path))  # page cache warm
    memory = ImageDataset(ImageSet(np.load(path), labels, ["a", "b"]))
    routes = {"plain (memory, DataLoader)": plain(memory, batch, seed=0, device=device),
              "memory, read ahead": TrainLoader(memory, batch, seed=0, device=device),
              "disk cache, read ahead": TrainLoader(disk, batch, seed=0, device=device),
              "resident on the device": TrainLoader(disk.resident(device), batch, seed=0, device=device)}
    best: dict[str, float] = {}
    for r in range(rounds):
        for name, loader in routes.items():
            loader.set_epoch(r)
            _sync(device)
            t, n = time.perf_counter(), 0
            for x, _ in loader:
                x = x.to(device, non_blocking=True)
                n += len(x)
            _sync(device)
            best[name] = max(best.get(name, 0.0), n / (time.perf_counter() - t))
    row, base = side * side * 3, best["plain (memory, DataLoader)"]
    for name, v in best.items():
        print(f"  {name:32s} {v:9.0f} images/s  {v * row / 1e9:6.2f} GB/s  {v / base:5.2f}x plain")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=2048)
    args = ap.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"batch routes on {device} (torch {torch.__version__}): correctness")
        check(device, Path(tmp))
        print(f"delivered to {device}, {args.images} images of 224x224x3, batch 256, best of 3 epochs")
        speed(device, Path(tmp), args.images)


if __name__ == "__main__":
    main()
