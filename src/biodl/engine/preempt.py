"""Pre-emption: a cluster's "stop now" becomes a checkpoint and a clean exit.

SLURM sends SIGTERM on pre-emption (and, with ``--signal=USR1@T``, SIGUSR1 before the time
limit); torchrun passes SIGTERM on to its processes. While a :class:`StopRequest` is active
these signals only raise a flag: the training loop finishes the step it is in, saves
``checkpoints/last`` (whose commit a signal cannot cut short), and raises :class:`Preempted`;
the CLI exits with code 143 (128 + SIGTERM), and ``--resume`` continues bit-identically.
Under DDP the ranks agree (an all-reduce of the flag every few steps), so all stop at one step.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch

from ..errors import PREEMPTED_EXIT, Preempted
from .distributed import all_reduce_sum, is_distributed

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
__all__ = ["SIGNALS", "PREEMPTED_EXIT", "Preempted", "StopRequest"]
CHECK_EVERY = 8  # under DDP: steps between agreeing on the flag (an all-reduce each time)


class StopRequest:
    """While entered (in the main thread; elsewhere signals keep their default), SIGTERM and
    SIGUSR1 set :attr:`signum` instead of ending the process; leaving restores the handlers."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        self.signum = None  # a signal that came before (an earlier fit) is not this fit's
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous = {}

    def agreed(self, step: int, device: torch.device, always: bool = False) -> int | None:
        """The signal to stop on, if any process got one: this process's flag, or under DDP the
        ranks' flags all-reduced at every ``CHECK_EVERY``-th step (and whenever ``always``; every
        rank must make the same calls)."""
        if not is_distributed():
            return self.signum
        if not always and step % CHECK_EVERY:
            return None
        flag = torch.tensor([float(self.signum or 0)], device=device)
        got = int(all_reduce_sum(flag).item())
        return (self.signum or int(signal.SIGTERM)) if got else None
