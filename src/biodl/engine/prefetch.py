"""A threaded prefetcher: the next batches are fetched by background threads while the current
one trains, in the loader's own order.

For images read from the disk cache, fetching a batch is one ``pread`` per run of rows (for
images in memory, one ``np.take``); both release the GIL, so threads read ahead in parallel with
the training step and with each other; with :func:`ring_fetcher` the reads land in buffers
allocated (and faulted in) once, pinned where an accelerator exists, and on CUDA the copy to the
device runs in the fetching thread on a side stream, overlapping the training step. The
batches, and their order, are exactly the wrapped loader's: shuffled, weighted and resumed
epochs stay bit-exact.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.utils.data import Dataset

__all__ = ["Prefetcher", "batch_fetcher", "ring_fetcher"]


def batch_fetcher(dataset: Dataset, pin: bool = False) -> Callable[[torch.Tensor, int], Any]:
    """``fetch(indices, k)`` -> ``dataset[indices]`` (a whole batch, newly allocated), in pinned
    memory with ``pin`` (only where an accelerator exists: pinning needs one)."""
    pin = pin and torch.cuda.is_available()

    def fetch(indices: torch.Tensor, k: int) -> Any:
        batch = dataset[indices]
        if not pin:
            return batch
        return tuple(t.pin_memory() if isinstance(t, torch.Tensor) else t for t in batch)

    return fetch


def ring_fetcher(dataset: Any, batch_size: int, slots: int,
                 device: torch.device | None = None) -> Callable[[torch.Tensor, int], Any]:
    """``fetch(indices, k)`` for a dataset that reads batches into a given buffer
    (``dataset.read_into(indices, out) -> (images, labels)``, e.g. an
    :class:`~biodl.data.arrays.ImageDataset` in memory or over the disk cache): batch ``k`` is
    read straight into buffer ``k % slots`` of a ring allocated once (rows: the batch size, or the
    set's size if smaller), so no batch allocates or faults in fresh pages. On the CPU a yielded
    batch is a view of its buffer and stays valid until ``slots - 1`` more batches have been asked
    for. With a CUDA ``device`` the buffers are pinned and the batch is copied to the device in
    the fetching thread (a side stream, waited for there), so it arrives ready and its buffer is
    free again at once."""
    cuda = device is not None and device.type == "cuda"
    shape = (min(batch_size, len(dataset)), *dataset.data.images.shape[1:])
    # zeros, not empty: every page is touched (faulted in) here, once, not by the first reads
    ring = [torch.empty(shape, dtype=torch.uint8, pin_memory=True) if cuda else torch.zeros(shape, dtype=torch.uint8)
            for _ in range(slots)]
    if cuda:
        side, main = torch.cuda.Stream(device), torch.cuda.current_stream(device)

    def fetch(indices: torch.Tensor, k: int) -> Any:
        x, y = dataset.read_into(indices, ring[k % slots].numpy())
        if not cuda:
            return x, y
        with torch.cuda.stream(side):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(side)
        done.synchronize()  # the buffer may be refilled; the batch is complete on the device
        x.record_stream(main)  # used on the training stream: not recycled before that is done with it
        y.record_stream(main)
        return x, y

    return fetch


class Prefetcher:
    """Batches ``fetch(indices, k)`` for the k-th item of ``index_batches`` (an iterable of index
    tensors, e.g. a :class:`~biodl.engine.loaders.TensorBatches`), in order, with up to ``depth``
    batches fetched ahead by ``workers`` threads. An error in a fetch is raised where that batch
    would have been yielded. With a :func:`ring_fetcher`, give it ``depth + 2`` slots: batch k's
    slot is then refilled only when batch k + 2 is asked for."""

    def __init__(self, index_batches: Iterable[torch.Tensor], fetch: Callable[[torch.Tensor, int], Any],
                 depth: int = 2, workers: int = 2) -> None:
        if depth < 1 or workers < 1:
            raise ValueError("depth and workers must be at least 1")
        self.index_batches, self.fetch, self.depth, self.workers = index_batches, fetch, depth, workers

    def __len__(self) -> int:
        return len(self.index_batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        pending: list[Future] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="biodl-prefetch") as pool:
            try:
                for k, indices in enumerate(self.index_batches):
                    pending.append(pool.submit(self.fetch, indices, k))
                    if len(pending) > self.depth:
                        yield pending.pop(0).result()
                while pending:
                    yield pending.pop(0).result()
            finally:
                for f in pending:  # a consumer that stops early: drop what was read ahead
                    f.cancel()
