"""The threaded prefetcher yields exactly the plain loader's batches, in order."""

import numpy as np
import pytest
import torch

from biodl.data.arrays import ImageDataset, ImageSet
from biodl.data.cache import DiskArray
from biodl.engine.loaders import TrainLoader
from biodl.engine.prefetch import Prefetcher, batch_fetcher, ring_fetcher


@pytest.fixture
def disk_set(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (53, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    labels = rng.integers(0, 3, 53)
    return ImageDataset(ImageSet(DiskArray(tmp_path / "images.npy"), labels, ["a", "b", "c"]))


def _epochs(loader, prefetch, epochs=((0, 0), (1, 0), (1, 2))):
    out = []
    for epoch, start in epochs:
        loader.set_epoch(epoch, start)
        fetch = (ring_fetcher(loader.loader.dataset, 8, slots=5) if prefetch == "ring" else
                 batch_fetcher(loader.loader.dataset))
        batches = Prefetcher(loader.loader.sampler, fetch, depth=3, workers=2) if prefetch else iter(loader)
        out.append([(x.clone(), y.clone()) for x, y in batches])
    return out


@pytest.mark.parametrize("weighted", [False, True])
def test_prefetched_batches_are_the_loaders(disk_set, weighted):
    weights = torch.linspace(0.1, 1.0, len(disk_set)) if weighted else None
    plain = _epochs(TrainLoader(disk_set, 8, seed=3, weights=weights), prefetch=False)
    assert [len(e) for e in plain] == [7, 7, 5]  # 53 images in batches of 8; the resumed epoch skips 2 batches
    for how in ("fresh", "ring"):  # new arrays per batch, or a ring of buffers reused
        fetched = _epochs(TrainLoader(disk_set, 8, seed=3, weights=weights), prefetch=how)
        for a, b in zip(plain, fetched, strict=True):
            assert len(a) == len(b)
            for (xa, ya), (xb, yb) in zip(a, b, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(plain[0][0][0], plain[1][0][0])  # epochs differ; the prefetcher kept that


def test_a_failed_fetch_is_raised_in_order_and_early_stops_are_clean():
    def fetch(i, k):
        if int(i[0]) == 3:
            raise OSError("short read (simulated)")
        return i * 2

    batches = [torch.tensor([k]) for k in range(6)]
    got = []
    with pytest.raises(OSError, match="simulated"):
        for b in Prefetcher(batches, fetch, depth=4):
            got.append(int(b[0]))
    assert got == [0, 2, 4]  # everything before the failing batch, in order
    first = next(iter(Prefetcher(batches[:3], lambda i, k: i, depth=2)))
    assert int(first[0]) == 0
    with pytest.raises(ValueError):
        Prefetcher(batches, fetch, depth=0)
