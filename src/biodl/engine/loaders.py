"""DataLoaders whose order is a pure function of (seed, epoch) and can start mid-epoch.

This is what makes a resumed run bit-identical to an uninterrupted one: the
sampler (a DistributedSampler, also with one process) draws its permutation from
``seed + epoch``; ``set_epoch(epoch, start_batch)`` skips the batches already done;
the loader's own generator, reseeded each epoch, gives the workers their seeds
without touching torch's global RNG.
"""

from __future__ import annotations

import os
import signal
from typing import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, TensorDataset

from ..repro import seed_worker
from .preempt import SIGNALS as STOP_SIGNALS
from .prefetch import Prefetcher, ring_fetcher


__all__ = [
    "ResumableSampler", "ShardSampler", "TensorBatches", "prefetch_threads", "Gathered", "TrainLoader", "eval_loader",
]


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can skip the first ``start`` indices of its epoch.

    With ``weights`` (one per sample) each epoch instead draws ``len(dataset)`` indices with
    replacement, with probability proportional to the weights (e.g. 1 / class count: every
    class equally often), from a generator seeded by ``seed + epoch``; rank r takes draws r,
    r+W, r+2W, ...
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int,
                 weights: torch.Tensor | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and (len(self.weights) != len(dataset) or not (self.weights >= 0).all()
                                         or not self.weights.sum() > 0):
            raise ValueError("sampling weights: one non-negative weight per sample, not all zero")

    def __iter__(self) -> Iterator[int]:
        if self.weights is None:
            return iter(list(super().__iter__())[self.start :])
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)
        return iter(draws[self.rank : self.total_size : self.num_replicas][self.start :].tolist())

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler[int]):
    """Evaluation sharding without padding: rank r sees indices r, r+W, r+2W, ... (no duplicates)."""

    def __init__(self, n: int, num_replicas: int, rank: int) -> None:
        self.indices = list(range(rank, n, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class TensorBatches(Sampler[torch.Tensor]):
    """Batches of indices as int64 tensors (one gather per batch for in-memory tensors)."""

    def __init__(self, sampler: Sampler[int], batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.int64)
        return iter(order.split(self.batch_size))

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)


def _batch_indexable(dataset: Dataset) -> bool:
    """Datasets that return a whole batch for a list of indices (tensors in memory)."""
    return isinstance(dataset, TensorDataset) or bool(getattr(dataset, "batch_indexable", False))


def _worker_init(worker_id: int) -> None:
    """A DataLoader worker: seeded from (seed, epoch), and deaf to the stop signals, which the
    training process handles (a cluster signals every process of the job: a worker killed by
    SIGTERM would turn a clean checkpoint-and-exit into a crash)."""
    seed_worker(worker_id)
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def prefetch_threads() -> int:
    """Threads that read batches ahead: half the CPUs, 2 to 4 (two reads in flight double the
    bandwidth from the page cache; more than four only compete with the training step)."""
    return max(2, min(4, (os.cpu_count() or 2) // 2))


class Gathered:
    """Batches ``dataset[indices]`` for each index tensor of ``batches``, in this thread: for
    sets resident on the device, where a batch is one gather there."""

    def __init__(self, dataset: Dataset, batches: TensorBatches) -> None:
        self.dataset, self.batches = dataset, batches

    def __iter__(self) -> Iterator:
        return (self.dataset[indices] for indices in self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _loader(dataset: Dataset, sampler: Sampler[int], batch_size: int, num_workers: int,
            device: torch.device | None, generator: torch.Generator) -> Iterable:
    """The batches of ``sampler``'s indices, by the cheapest route that gives them exactly:
    gathered where the set is resident on an accelerator; fetched ahead by threads into a ring of
    (pinned) buffers, from the disk cache or from memory (:mod:`~biodl.engine.prefetch`); else a
    DataLoader (``num_workers`` processes), one indexing call per batch where the dataset allows."""
    cuda = device is not None and device.type == "cuda"
    if _batch_indexable(dataset):
        batches = TensorBatches(sampler, batch_size)
        on = getattr(dataset, "device", torch.device("cpu"))
        if on.type != "cpu":
            return Gathered(dataset, batches)
        if getattr(dataset, "reads_into", False) and num_workers == 0:
            threads = prefetch_threads()
            depth = max(2, threads)
            return Prefetcher(batches, ring_fetcher(dataset, batch_size, depth + 2, device), depth, threads)
        sampler, batch_size = batches, None  # type: ignore[assignment]
    return DataLoader(dataset, sampler=sampler, batch_size=batch_size, num_workers=num_workers, pin_memory=cuda,
                      generator=generator, worker_init_fn=_worker_init, persistent_workers=False)


class TrainLoader:
    """Shuffled (or weighted-sampled), sharded, resumable training batches (on ``device`` where
    the route there allows, see :func:`_loader`)."""

    def __init__(
        self, dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0,
        rank: int = 0, world_size: int = 1, device: torch.device | None = None, weights: torch.Tensor | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.dataset = dataset
        self.sampler = ResumableSampler(dataset, world_size, rank, shuffle=True, seed=seed, weights=weights)
        self.generator = torch.Generator()
        self.loader = _loader(dataset, self.sampler, batch_size, num_workers, device, self.generator)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.sampler.set_epoch(epoch)
        self.sampler.start = start_batch * self.batch_size
        self.generator.manual_seed((self.seed * 1_000_003 + epoch) % 2**63)

    def __iter__(self) -> Iterator:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, rank: int = 0, world_size: int = 1,
                device: torch.device | None = None) -> Iterable:
    """In-order batches; under DDP each rank gets a disjoint shard."""
    return _loader(dataset, ShardSampler(len(dataset), world_size, rank), batch_size, num_workers, device,
                   torch.Generator().manual_seed(0))
