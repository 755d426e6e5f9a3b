"""The run directory: one folder per run, the same layout for every task and study.

    RUN_DIR/
      manifest.json     versions, git commit, device, config, seed, input hashes, times
      config.yaml       the fully resolved config
      metrics.json      final evaluation metrics, flat keys (``test/mcc``)
      metrics.csv       one row per epoch
      tb/               TensorBoard event files
      checkpoints/      last.safetensors + last.json, best.safetensors + best.json
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from .config import RunConfig, dump_config, load_config
from .errors import RunDirError
from .io import atomic_write_json, atomic_write_text
from .io import read_json as _read_json

CONFIG = "config.yaml"
MANIFEST = "manifest.json"
METRICS = "metrics.json"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``, with a counter when that exists already."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{name}-{stamp}"
    i = 1
    while path.exists():
        i += 1
        path = Path(root) / f"{name}-{stamp}-{i}"
    return path


def prepare_run_dir(out: str | Path | None, name: str, resume: bool) -> Path:
    """Create (or, with ``resume``, reopen) a run directory. Never reuses a non-empty one otherwise.

    Under torchrun, rank 0 decides and the other ranks receive the same path.
    """
    from .engine.distributed import is_distributed

    if is_distributed():
        import torch.distributed as dist

        box: list[Any] = [None]
        if dist.get_rank() == 0:
            try:
                box[0] = str(_prepare(out, name, resume))
            except RunDirError as exc:
                box[0] = exc
        dist.broadcast_object_list(box, src=0)
        if isinstance(box[0], RunDirError):
            raise box[0]
        return Path(box[0])
    return _prepare(out, name, resume)


def _prepare(out: str | Path | None, name: str, resume: bool) -> Path:
    path = Path(out) if out is not None else default_run_dir(name)
    if resume:
        if not (path / CONFIG).is_file():
            raise RunDirError(path, f"nothing to resume: no {CONFIG} in this directory")
        return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirError(path, "exists and is not empty; choose another --out or add --resume")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write_text(run_dir / CONFIG, dump_config(config))


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config a run was made with."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(run_dir, "no such run directory")
    if not (run_dir / CONFIG).is_file():
        raise RunDirError(run_dir, f"not a run directory (no {CONFIG})")
    return load_config(run_dir / CONFIG)


def read_json(path: Path) -> dict[str, Any]:
    return _read_json(path, RunDirError)


def write_metrics(run_dir: Path, metrics: dict[str, float], name: str = METRICS) -> Path:
    path = run_dir / name
    atomic_write_json(path, {k: metrics[k] for k in sorted(metrics)})
    return path
