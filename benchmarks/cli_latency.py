"""How long `biodl` takes to answer when it needs no model: --version, every command's --help,
`biodl studies`, and one-line errors (a bad config key, a missing file or run). Each command is
a fresh process, timed from outside (median of --repeats), beside the same commands on a
baseline checkout (default: the commit before the CLI imported lazily), and the heavy modules
each command imported.

    python benchmarks/cli_latency.py [--repeats 3] [--baseline REF | --no-baseline]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the last commit whose `biodl studies` imported every study (and torch) to list them
BASELINE = "70ed112"
HEAVY = ("torch", "torchvision", "torchmetrics", "captum", "openslide", "lifelines", "sklearn", "scipy", "pandas",
         "matplotlib", "numpy", "pydantic", "yaml", "rich")
PROBE = """
import atexit, sys
atexit.register(lambda: print("MODULES", ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr))
sys.argv = ["biodl", *sys.argv[1:]]
from biodl.cli import main
main()
"""


def commands(work: Path) -> dict[str, list[str]]:
    """Label -> arguments: the fast paths a user meets before any model is loaded."""
    import typer.main

    from biodl.cli import app

    bad = work / "bad.yaml"
    bad.write_text("task: tabular\ndata:\n  dataset: heart-failure\n  targt: DEATH_EVENT\n")
    group = typer.main.get_command(app)
    helps = {}
    for name, cmd in sorted(group.commands.items()):
        for sub in sorted(getattr(cmd, "commands", {}) or {}) or [None]:
            args = [name, sub] if sub else [name]
            helps[f"{' '.join(args)} --help"] = [*args, "--help"]
    return {"--version": ["--version"], "studies": ["studies"], **helps,
            "config error (unknown key)": ["train", "--config", str(bad)],
            "missing config file": ["train", "--config", str(work / "none.yaml")],
            "missing data (--data)": ["train", "--data", str(work / "none")],
            "missing run (predict)": ["predict", str(work / "none"), "x.csv"],
            "unknown study": ["run", "nosuch"]}


def time_command(args: list[str], src: Path, repeats: int) -> tuple[float, str]:
    """Median wall seconds of ``biodl ARGS`` with ``src`` first on the path, and the heavy modules
    it imported (one more run, through the probe)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "biodl", *args], env=env, capture_output=True)
        seconds.append(time.perf_counter() - t)
    probe = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], env=env, capture_output=True,
                           text=True)
    modules = [line.split(" ", 1)[1] if " " in line else "" for line in probe.stderr.splitlines()
               if line.startswith("MODULES")]
    return statistics.median(seconds), (modules[-1] if modules else "?") or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the checkout to compare with")
    parser.add_argument("--no-baseline", action="store_true")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="biodl-cli-latency-"))
    base = None
    if not opts.no_baseline and shutil.which("git"):
        tree = work / "baseline"
        made = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), opts.baseline],
                              capture_output=True, text=True)
        base = tree / "src" if made.returncode == 0 else None
        if base is None:
            print(f"no baseline: git worktree add {opts.baseline} failed: {made.stderr.strip()}")
    try:
        rows = []
        for label, args in commands(work).items():
            now, mods = time_command(args, ROOT / "src", opts.repeats)
            before, bmods = time_command(args, base, opts.repeats) if base else (float("nan"), "")
            rows.append((label, now, before, mods, bmods))
        shown = opts.baseline if base else "-"
        print(f"biodl CLI latency, median of {opts.repeats} fresh processes (s); baseline {shown}")
        print(f"{'command':<34} {'now':>6} {'before':>7} {'ratio':>6}  heavy modules imported now (before)")
        for label, now, before, mods, bmods in rows:
            ratio = before / now if base else float("nan")
            print(f"{label:<34} {now:6.2f} {before:7.2f} {ratio:5.1f}x  {mods}" + (f"  ({bmods})" if base else ""))
        worst = max(rows, key=lambda r: r[1])
        print(f"slowest now: {worst[0]} {worst[1]:.2f} s (target <= 1.0 s)")
    finally:
        if base is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")],
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
