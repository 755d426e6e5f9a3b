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
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from .config import RunConfig, dump_config, load_config, validation_problem
from .errors import RunDirError
from .io import atomic_write_json, atomic_write_text, fsync_dir
from .io import read_json as _read_json

__all__ = [
    "CONFIG", "MANIFEST", "METRICS", "METRICS_CSV", "TENSORBOARD", "CHECKPOINTS", "default_run_dir",
    "prepare_run_dir", "create_run_dir", "save_config", "load_run_config", "read_json", "read_validated",
    "read_metrics", "Manifest", "read_manifest", "write_metrics",
]


CONFIG = "config.yaml"
MANIFEST = "manifest.json"
METRICS = "metrics.json"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"

M = TypeVar("M", bound=BaseModel)


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
    """The run directory to use: ``out`` (or a new ``runs/<name>-<time>``), which must be absent
    or empty, or with ``resume`` an existing run. Nothing is created yet (see
    :func:`create_run_dir`), so a fault found while the run is being set up leaves nothing behind.

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
    if path.exists() and not path.is_dir():
        raise RunDirError(path, "exists and is not a folder; choose another --out")
    if path.exists() and any(path.iterdir()):
        raise RunDirError(path, "exists and is not empty; choose another --out (or add --resume to continue "
                                "an interrupted run)")
    return path


def create_run_dir(path: Path, stage: Callable[[Path], Any]) -> Any:
    """Create the new run directory ``path`` whole: ``stage(folder)`` writes its first files into
    a temporary sibling folder, which is then renamed to ``path`` (replacing an empty folder).
    On any fault the temporary folder is removed and ``path`` is untouched. Returns what
    ``stage`` returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.starting-", dir=path.parent))
    try:
        result = stage(tmp)
        if path.is_dir():
            path.rmdir()  # empty (checked by prepare_run_dir); rename cannot replace it everywhere
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)
    return result


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


def read_validated(path: Path, model: type[M], context: str = "", data: dict[str, Any] | None = None) -> M:
    """A run-directory JSON file (or its ``data``, already read) checked against ``model``; a
    fault is a RunDirError naming the file and the key (after ``context``, e.g. what the file
    should fit)."""
    try:
        return model.model_validate(read_json(path) if data is None else data)
    except ValidationError as exc:
        raise RunDirError(path, f"{context}{validation_problem(exc)}") from None


def read_metrics(path: Path) -> dict[str, float | None]:
    """``metrics.json`` (or an evaluation's): metric name -> number, or None where undefined
    (JSON null); anything else is a RunDirError naming the key. Keys come back in biodl's
    vocabulary (:func:`biodl.metrics.canonical`: a run written as ``test/tpr`` reads as
    ``test/sensitivity``), so runs of any version compare."""
    from .metrics import canonical

    out: dict[str, float | None] = {}
    for key, value in read_json(path).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            got = repr(value) if not isinstance(value, (list, dict)) else f"a {type(value).__name__}"
            raise RunDirError(path, f"metric {key!r} is not a number (got {got[:60]})")
        out[canonical(key)] = None if value is None else float(value)
    return out


class _Input(BaseModel):
    path: str
    sha256: str
    bytes: StrictInt | None = None


class _Git(BaseModel):
    commit: str
    dirty: bool = False


class Manifest(BaseModel):
    """What the code reads from ``manifest.json``, typed; every other key is kept as it is."""

    model_config = ConfigDict(extra="allow")

    config: dict[str, Any] = Field(default_factory=dict)
    seed: StrictInt | None = None
    device: str | None = None
    command: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    git: _Git | None = None
    platform: dict[str, Any] | None = None
    inputs: dict[str, _Input] = Field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    split: str | None = None
    classes: list[str] | None = None
    class_counts: dict[str, list[StrictInt]] | None = None
    duplicates_across_splits: list[list[str]] | None = None
    pretrained: dict[str, Any] | None = None
    note: str | None = None
    data_content_sha256: str | None = None
    resumed: list[str] | None = None
    seconds: dict[str, float] | float | None = None  # per phase (a float: total, older runs)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/manifest.json`` checked against :class:`Manifest`, as the dict it holds."""
    path = Path(run_dir) / MANIFEST
    data = read_json(path)
    read_validated(path, Manifest, data=data)
    return data


def write_metrics(run_dir: Path, metrics: dict[str, float], name: str = METRICS) -> Path:
    path = run_dir / name
    atomic_write_json(path, {k: metrics[k] for k in sorted(metrics)})
    return path
