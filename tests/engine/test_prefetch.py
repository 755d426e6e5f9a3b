"""The threaded prefetcher yields exactly the plain loader's batches, in order."""

import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from biodl.data.arrays import ImageDataset, ImageSet
from biodl.data.cache import ConcatArray, DiskArray
from biodl.engine.loaders import TensorBatches, TrainLoader
from biodl.engine.prefetch import Prefetcher, batch_fetcher


@pytest.fixture
def sets(tmp_path):
    """The same 53 images three ways: rows of a cache file, an array in memory, and resident (a
    tensor; on the CPU here, on the GPU in training)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (53, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    labels = rng.integers(0, 3, 53)
    disk = ImageDataset(ImageSet(DiskArray(tmp_path / "images.npy"), labels, ["a", "b", "c"]))
    return {"disk": disk, "memory": ImageDataset(ImageSet(images, labels, ["a", "b", "c"])),
            "resident": disk.resident("cpu")}


def _plain(dataset, batch_size, **kw):
    """The plain route, for reference: a DataLoader indexing ``dataset`` one batch at a time
    (new memory each batch), in the order of a TrainLoader's sampler."""
    loader = TrainLoader(dataset, batch_size, **kw)
    loader.loader = DataLoader(dataset, sampler=TensorBatches(loader.sampler, batch_size), batch_size=None)
    return loader


def _epochs(loader, epochs=((0, 0), (1, 0), (1, 2))):
    out = []
    for epoch, start in epochs:
        loader.set_epoch(epoch, start)
        out.append([(x.clone(), y.clone()) for x, y in loader])
    return out


@pytest.mark.parametrize("weighted", [False, True])
def test_prefetched_batches_are_the_loaders(sets, weighted):
    weights = torch.linspace(0.1, 1.0, 53) if weighted else None
    loaders = {k: TrainLoader(ds, 8, seed=3, weights=weights) for k, ds in sets.items()}
    for k in ("disk", "memory", "resident"):  # read ahead by threads into a ring (resident: on the CPU here)
        assert isinstance(loaders[k].loader, Prefetcher), k
    plain = _epochs(_plain(sets["memory"], 8, seed=3, weights=weights))
    assert [len(e) for e in plain] == [7, 7, 5]  # 53 images in batches of 8; the resumed epoch skips 2 batches
    fresh = TrainLoader(sets["disk"], 8, seed=3, weights=weights)  # new arrays per batch instead of the ring
    fresh.loader = Prefetcher(fresh.loader.index_batches, batch_fetcher(sets["disk"]), depth=3, workers=2)
    for got in (_epochs(loaders["disk"]), _epochs(loaders["memory"]), _epochs(loaders["resident"]), _epochs(fresh)):
        for a, b in zip(plain, got, strict=True):
            assert len(a) == len(b)
            for (xa, ya), (xb, yb) in zip(a, b, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.stride() == xb.stride()
    assert not torch.equal(plain[0][0][0], plain[1][0][0])  # epochs differ; the prefetcher kept that


@pytest.mark.parametrize("source", ["disk", "memory"])
def test_the_ring_is_reused_without_overwriting_a_batch_in_use(sets, source):
    """Batch k's buffer is refilled only once batch k + 1 has been handed over; the consumer sees
    each batch intact while it holds it."""
    ring = TrainLoader(sets[source], 8, seed=1)
    plain = _plain(sets["memory"], 8, seed=1)
    ring.set_epoch(0)
    plain.set_epoch(0)
    buffers = set()
    for (x, y), (xp, yp) in zip(ring, plain, strict=True):
        time.sleep(0.01)  # the threads read ahead meanwhile
        assert torch.equal(x, xp) and torch.equal(y, yp)
        buffers.add(x.untyped_storage().data_ptr())
    assert len(buffers) == ring.loader.depth + 2 < len(ring)  # 4 buffers served 7 batches


def test_a_transform_or_a_set_smaller_than_a_batch_keeps_the_loader_exact(sets):
    """A per-sample transform cannot read into a buffer (a DataLoader then); a ring for a set
    smaller than a batch holds the set's rows, not the batch size's."""
    flip = ImageDataset(sets["memory"].data, transform=lambda x: x.flip(-1))
    assert not flip.reads_into and isinstance(TrainLoader(flip, 8, seed=0).loader, DataLoader)
    small = ImageDataset(sets["memory"].data, indices=np.arange(5))
    loader = TrainLoader(small, 64, seed=0)
    loader.set_epoch(0)
    (x, y), = list(loader)
    assert x.shape == (5, 3, 8, 8) and x.untyped_storage().nbytes() == 5 * 8 * 8 * 3
    assert torch.equal(x, sets["memory"][torch.as_tensor(list(loader.sampler))][0])


def test_read_into_keeps_the_order_asked_and_reads_runs_whole(tmp_path):
    images = np.arange(20 * 2 * 2, dtype=np.uint8).reshape(20, 2, 2, 1)
    np.save(tmp_path / "a.npy", images)
    disk = DiskArray(tmp_path / "a.npy")
    for rows in ([7, 8, 9, 3, 4, 19, 0, 1, 2], [5, 5, 4], [12], [3, 2, 1, 0], list(range(20))):
        out = np.zeros((25, 2, 2, 1), np.uint8)
        got = disk.read_into(np.array(rows), out)
        assert got.shape == (len(rows), 2, 2, 1) and np.array_equal(got, images[rows])
        assert not out[len(rows):].any()  # nothing written past the rows asked
    np.save(tmp_path / "b.npy", images[:7])
    joined = ConcatArray([DiskArray(tmp_path / "b.npy"), disk])  # e.g. the tiles of two slides
    both = np.concatenate([images[:7], images])
    rows = np.array([20, 3, 8, 9, 10, 0, 26, 6, 7])  # both parts, interleaved, runs across the seam
    out = np.zeros((12, 2, 2, 1), np.uint8)
    assert np.array_equal(joined.read_into(rows, out), both[rows]) and not out[len(rows):].any()
    assert np.array_equal(joined[rows], both[rows])
    (tmp_path / "short.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-3])
    with pytest.raises(OSError, match="short read .* truncated"):
        DiskArray(tmp_path / "short.npy")[[0, 19]]


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
