"""Runs made of child runs: a k-fold run (each fold a child, see ``crossval``) and a deep
ensemble (each member a child, see ``ensemble``).

The parent trains each child as a normal, resumable run in its own folder inside the parent's
run directory, and an interrupted parent resumes at the first unfinished child: finished
children are kept as they are, a started one goes on from its last checkpoint. Then the parent
pools the children's predictions its own way and writes its results; its ``seconds`` (in the
manifest) are its own plus the sum of its children's phases.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import BaseModel

from .. import runs
from ..engine.distributed import barrier
from .common import Stopwatch, Run, run_path, start_run, write_results


__all__ = ["train_children"]


def train_children(config: BaseModel, out: str | Path | None, resume: bool, device: torch.device,
                   children: list[tuple[BaseModel, Path]], train_one: Callable[..., Run],
                   preprocess: dict[str, Any], extra: dict[str, Any],
                   pool: Callable[[Path], tuple[dict[str, float], list[dict[str, Any]]]],
                   watch: Stopwatch | None = None, inputs: dict[str, Path] | None = None) -> Run:
    """Train each child (its config and its folder relative to the run directory) with
    ``train_one(config, out, resume)``, then ``pool(run_dir)`` -> (the parent's metrics, its
    report sections). ``inputs``: data files hashed into the parent's manifest."""
    watch = watch or Stopwatch()
    run_dir = run_path(config, out, resume, device)
    manifest = start_run(config, run_dir, resume, device, preprocess, inputs or {}, extra)
    for child, folder in children:
        where = run_dir / folder
        if (where / runs.METRICS).is_file():
            continue  # finished before an interruption
        train_one(child, where, resume=(where / runs.CONFIG).is_file())
    barrier()  # rank 0 has written every child's files
    for _, folder in children:
        for phase, seconds in (runs.read_manifest(run_dir / folder).get("seconds") or {}).items():
            if phase != "total":
                watch.add(phase, seconds)
    started = time.perf_counter()
    metrics, sections = pool(run_dir)
    watch.add("evaluate", time.perf_counter() - started)
    write_results(run_dir, metrics, manifest, layout={"sections": sections}, watch=watch)
    return Run(run_dir, metrics)
