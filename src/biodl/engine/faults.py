"""Fault injection for the crash-consistency tests.

``BIODL_CRASH_AT=NAME:N[:SIGNAL]`` makes the process send itself SIGNAL (default
KILL, which nothing can catch or clean up after; TERM is what a cluster sends on
pre-emption) the N-th time it reaches the point NAME: ``step`` (after an optimiser
step), ``pending`` and ``renamed`` (inside a checkpoint commit). Unset, each point
costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point"]


_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("BIODL_CRASH_AT")
    if not spec:
        return
    where, _, rest = spec.partition(":")
    if where != name:
        return
    count, _, sig = rest.partition(":")
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(count or 1):
        os.kill(os.getpid(), signal.Signals[f"SIG{sig or 'KILL'}"])
