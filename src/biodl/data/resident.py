"""The device-resident cache: a decoded uint8 set copied once to the training device.

A batch is then one gather there (no read, no host-to-device copy per batch). Whether a set goes
is decided by ``data.device_cache``: ``auto`` takes a GPU when the set fits in the given share of
its free memory; ``on`` insists (the CPU counts as a device: the set is read into process memory)
and a set that does not fit is a :class:`~biodl.errors.ConfigError` giving the sizes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["free_bytes", "Residence", "decide"]


GiB = 2**30


def free_bytes(device: torch.device) -> int | None:
    """Memory free on ``device`` now, in bytes: the GPU's free memory, or for the CPU the host's
    available memory (MemAvailable: free plus reclaimable page cache); None where unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None


@dataclass
class Residence:
    """What was decided, for the manifest: the mode asked, whether the set went to the device, its
    size and the device's free memory (bytes) at the time."""

    mode: str
    device: str
    resident: bool
    set_bytes: int
    free_bytes: int | None
    share: float

    def to_dict(self) -> dict:
        return asdict(self)


def decide(mode: str, images, device: torch.device, share: float) -> Residence:
    """Whether ``images`` ((N, H, W, C) uint8, an array or a disk-cache array) go to ``device``
    under ``data.device_cache: mode``; ``on`` when they do not fit raises a ConfigError."""
    need = int(np.prod(images.shape, dtype=np.int64)) * np.dtype(images.dtype).itemsize
    free = free_bytes(device) if mode != "off" else None
    fits = free is not None and need <= share * free
    if mode == "on" and free is not None and not fits:
        raise ConfigError("data.device_cache", f"on, but the decoded set needs {need / GiB:.2f} GiB and "
                                               f"{share:.0%} of the {free / GiB:.2f} GiB free on {device} is "
                                               f"{share * free / GiB:.2f} GiB (data.device_cache_share); use auto "
                                               "or off, or a smaller data.size")
    resident = mode == "on" or (mode == "auto" and device.type == "cuda" and fits)
    return Residence(mode, str(device), resident, need, free, share)
