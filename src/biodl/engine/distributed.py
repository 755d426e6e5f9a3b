"""Helpers for DistributedDataParallel under ``torchrun`` (one process per device)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


__all__ = ["world", "is_distributed", "is_main_process", "init_distributed", "all_reduce_sum", "barrier"]


def world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) when not distributed."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed): only this process writes files."""
    return not is_distributed() or dist.get_rank() == 0


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1. NCCL on CUDA, else gloo."""
    _, world_size, _ = world()
    if world_size <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place); a no-op when not distributed."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()
