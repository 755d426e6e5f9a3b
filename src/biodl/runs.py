"""The run directory: one folder per run, the same layout for every task and study. This module
is the one owner of the layout: every file name is defined here, and the JSON files a run is
used through are read and written here (checked against their schemas: a damaged or foreign
file is one RunDirError naming it).

    RUN_DIR/
      manifest.json       versions, git commit, device, config, seed, input hashes, times
      config.yaml         the fully resolved config
      preprocess.json     what the model saw: classes, features or pixel statistics, stain, ...
      metrics.json        final evaluation metrics, flat keys (``test/mcc``)
      metrics.csv         one row per epoch
      calibration.json    the recalibration fitted on the validation split
      conformal.json      the conformal predictor fitted on the validation split
      test_predictions.csv, val_predictions.csv   one row per case (see report.predictions)
      report.json         a study's report sections (the report rebuilds from it)
      tb/                 TensorBoard event files
      checkpoints/        last.safetensors + last.json, best.safetensors + best.json
      folds/fold<k>/      a k-fold parent's fold runs (each a run directory)
      members/member<k>/  an ensemble parent's member runs
      evaluation/         biodl evaluate's outputs; predictions/: biodl predict's
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from .config import RunConfig, build_config, dump_config, read_yaml, validation_problem
from .errors import RunDirError
from .io import atomic_folder, atomic_write_json, atomic_write_text
from .io import read_json as _read_json

if TYPE_CHECKING:
    from .trust.calibration import Recalibration
    from .trust.conformal import ConformalPredictor

__all__ = [
    "CONFIG", "MANIFEST", "PREPROCESS", "METRICS", "METRICS_CSV", "CALIBRATION", "CONFORMAL", "LAYOUT", "TENSORBOARD",
    "CHECKPOINTS", "FOLDS", "MEMBERS", "EVALUATION", "PREDICTIONS", "predictions_file", "fold_dir", "member_dir",
    "default_run_dir", "prepare_run_dir", "create_run_dir", "save_config", "load_run_config", "read_json",
    "read_validated", "read_preprocess", "read_metrics", "Manifest", "read_manifest", "write_metrics",
    "checkpoint_prefix", "read_calibration", "write_calibration", "read_conformal", "write_conformal",
]


CONFIG = "config.yaml"
MANIFEST = "manifest.json"
PREPROCESS = "preprocess.json"
METRICS = "metrics.json"
METRICS_CSV = "metrics.csv"
CALIBRATION = "calibration.json"
CONFORMAL = "conformal.json"
LAYOUT = "report.json"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
FOLDS = "folds"
MEMBERS = "members"
EVALUATION = "evaluation"
PREDICTIONS = "predictions"


def predictions_file(prefix: str) -> str:
    """``<prefix>_predictions.csv``: the per-case predictions of a split (``test``, ``val``) or of
    an evaluation."""
    return f"{prefix}_predictions.csv"


def fold_dir(run_dir: str | Path, k: int) -> Path:
    """``RUN_DIR/folds/fold<k+1>``: the run of fold ``k`` (0-based) of a k-fold parent."""
    return Path(run_dir) / FOLDS / f"fold{k + 1}"


def member_dir(run_dir: str | Path, k: int) -> Path:
    """``RUN_DIR/members/member<k+1>``: the run of member ``k`` (0-based) of a deep ensemble."""
    return Path(run_dir) / MEMBERS / f"member{k + 1}"


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
    :func:`create_run_dir`), so a fault found while the run is being set up leaves nothing behind."""
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
    """Create the new run directory ``path`` whole (:func:`biodl.io.atomic_folder`): ``stage(folder)``
    writes its first files into a temporary sibling folder, which is then renamed to ``path``
    (replacing an empty folder). On any fault ``path`` is untouched. Returns what ``stage``
    returns."""
    with atomic_folder(path) as folder:
        result = stage(folder)
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
    raw = read_yaml(run_dir / CONFIG)
    if "task" not in raw and "name" in raw:  # a study's folder: its models are compared, none kept for use
        raise RunDirError(run_dir, f"is the folder of the study {raw['name']!r}, which compares models and keeps "
                                   "none for use; predict, evaluate, explain, export and calibrate take a run of "
                                   "biodl train")
    return build_config(raw, None, where=str(run_dir / CONFIG))


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
    vocabulary (:func:`biodl.evaluation.canonical`: a run written as ``test/tpr`` reads as
    ``test/sensitivity``), so runs of any version compare."""
    from .evaluation import canonical

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


def read_preprocess(run_dir: Path, model: type[M], task: str) -> M:
    """``RUN_DIR/preprocess.json`` checked against the task's ``model``; a file of another task's
    run, a missing key or a wrong type is one RunDirError naming the file and the key."""
    return read_validated(Path(run_dir) / PREPROCESS, model, f"does not fit a run of task {task} (as {CONFIG} "
                                                              "says): ")


def checkpoint_prefix(run_dir: str | Path, which: str = "best") -> Path:
    """``RUN_DIR/checkpoints/<which>`` (``best`` falls back to ``last`` when the run kept no best
    epoch), the prefix of a safetensors + JSON pair; a run without one is a RunDirError."""
    def present(prefix: Path) -> bool:
        return prefix.with_suffix(".json").exists() or prefix.with_suffix(".safetensors").exists()

    if which not in ("best", "last"):
        raise RunDirError("--checkpoint", f"must be best or last, got {which!r}")
    prefix = Path(run_dir) / CHECKPOINTS / which
    if which == "best" and not present(prefix):
        prefix = prefix.with_name("last")
    if not present(prefix):
        raise RunDirError(run_dir, f"holds no model checkpoint ({CHECKPOINTS}/best.* or last.*); did training "
                                   "finish?")
    return prefix


def read_calibration(run_dir: str | Path) -> "Recalibration | None":
    """The run's recalibration (``calibration.json``), or None when it has none."""
    from .trust.calibration import Recalibration

    path = Path(run_dir) / CALIBRATION
    return read_validated(path, Recalibration, "is not a recalibration file: ") if path.exists() else None


def write_calibration(run_dir: str | Path, cal: "Recalibration", exclusive: bool = False) -> Path:
    """Write ``calibration.json``; ``exclusive``: only where there is none (see :func:`atomic_write`)."""
    path = Path(run_dir) / CALIBRATION
    atomic_write_json(path, cal.model_dump(exclude_none=True), exclusive)
    return path


def read_conformal(run_dir: str | Path) -> "ConformalPredictor | None":
    """The run's conformal predictor (``conformal.json``), or None when it has none."""
    from .trust.conformal import ConformalPredictor

    path = Path(run_dir) / CONFORMAL
    return read_validated(path, ConformalPredictor, "is not a conformal predictor file: ") if path.exists() else None


def write_conformal(run_dir: str | Path, pred: "ConformalPredictor") -> Path:
    path = Path(run_dir) / CONFORMAL
    atomic_write_json(path, pred.model_dump())
    return path
