"""Peak memory and wall time of a command, measured in a fresh child process (shared by the
memory benchmarks)."""

from __future__ import annotations

import subprocess
import sys
import time

WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of ``cmd`` run as a child of a fresh process."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True, check=True)
    kb, rc = out.stdout.split()[-2:]
    if rc != "0":
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return int(kb) / 1024, time.perf_counter() - t
