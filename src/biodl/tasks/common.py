"""What every task's run does the same way: open the run directory, choose the callbacks,
finish with the best weights evaluated, and reload a finished run's weights."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
from pydantic import BaseModel

from .. import runs
from ..config import config_dict, config_hash
from ..data.folders import image_paths
from ..engine import BestCheckpoint, CSVLogger, EarlyStopping, ProgressBar, TensorBoardLogger, Trainer
from ..engine.callbacks import added_callbacks
from ..engine.checkpoint import load_model_weights, model_state
from ..engine.inferer import dropout_layers
from ..engine.distributed import barrier, init_distributed, is_distributed, is_main_process
from ..errors import ConfigError, DataError, RunDirError
from ..io import atomic_write_json, check_writable
from ..evaluation import bootstrap_cis, calibration_bins
from ..report.predictions import save_predictions
from ..repro import finish_manifest, write_manifest

__all__ = [
    "Run", "Stopwatch", "run_path", "start_run", "callbacks", "finish_run",
    "write_results", "image_files", "refuse_overwrite", "make_trainer", "score_predictions", "class_weights",
    "weighted_cross_entropy", "without_test", "finish_trial", "best_predictions", "SoftmaxEnd",
]


M = TypeVar("M", bound=BaseModel)


@dataclass
class Run:
    """A finished run: where it is (``run_dir``; ``biodl.load(run)`` makes it a predictor), its
    final metrics, and for a single run trained in this process, its trainer (holding the best
    weights; None for a k-fold or ensemble parent, whose models are its children's)."""

    run_dir: Path
    metrics: dict[str, float]
    trainer: Trainer | None = None


class Stopwatch:
    """Wall-clock seconds a run spends in each phase, summed over repeats: ``decode`` (image
    files to arrays), ``cache`` (arrays read back from the decoded-image cache instead), ``train``,
    ``evaluate`` (best weights reloaded, test metrics, CIs, figures); ``total`` from creation.
    ``manifest.json`` holds them as ``seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def summary(self) -> dict[str, float]:
        """Phase -> seconds (rounded to 0.1 s), with ``total``."""
        return {**{k: round(v, 1) for k, v in self.seconds.items()},
                "total": round(time.perf_counter() - self._start, 1)}


def run_path(config: BaseModel, out: str | Path | None, resume: bool, device: torch.device) -> Path:
    """Where the run goes (joining the process group under torchrun): ``out`` or a new
    ``runs/<name>-<time>``, checked but not created, or with ``resume`` the run to continue, whose
    config must be ``config``. A task builds its model and trainer between this and
    :func:`start_run`, so a fault there leaves no directory behind."""
    init_distributed(device)
    run_dir = _agreed_run_dir(out, config.name, resume)
    if resume and config_hash(runs.load_run_config(run_dir)) != config_hash(config):
        raise RunDirError(run_dir / runs.CONFIG, "differs from the config given; resume with the run's own config")
    return run_dir


def _agreed_run_dir(out: str | Path | None, name: str, resume: bool) -> Path:
    """:func:`runs.prepare_run_dir`; under torchrun rank 0 decides and the other ranks receive the
    same path (or the same error)."""
    if not is_distributed():
        return runs.prepare_run_dir(out, name, resume)
    import torch.distributed as dist

    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = str(runs.prepare_run_dir(out, name, resume))
        except RunDirError as exc:
            box[0] = exc
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], RunDirError):
        raise box[0]
    return Path(box[0])


def start_run(config: BaseModel, run_dir: Path, resume: bool, device: torch.device, preprocess: dict[str, Any],
              inputs: dict[str, Path], extra: dict[str, Any]) -> dict[str, Any]:
    """Create the run directory with config.yaml, preprocess.json and manifest.json, all at once
    (rank 0; see :func:`runs.create_run_dir`), or reopen it with ``resume``. Returns the manifest."""
    manifest: dict[str, Any] = {}
    if is_main_process():
        if resume:
            manifest = runs.read_manifest(run_dir)
            manifest.setdefault("resumed", []).append(manifest.get("finished") or "after an interruption")
        else:
            def stage(folder: Path) -> dict[str, Any]:
                runs.save_config(folder, config)
                atomic_write_json(folder / runs.PREPROCESS, preprocess)
                return write_manifest(folder, config=config_dict(config), seed=config.seed, device=str(device),
                                      inputs=inputs, extra=extra)

            manifest = runs.create_run_dir(run_dir, stage)
    barrier()  # the other ranks write into it from now on
    return manifest


def callbacks(config: BaseModel, run_dir: Path, show: tuple[str, ...] | None = None) -> list:
    """metrics.csv, TensorBoard, best checkpoint, early stopping and progress, as configured."""
    t = config.trainer
    cbs: list = [CSVLogger(run_dir / runs.METRICS_CSV), TensorBoardLogger(run_dir / runs.TENSORBOARD),
                 BestCheckpoint(run_dir / runs.CHECKPOINTS, t.monitor, t.mode)]
    if t.early_stopping_patience:
        cbs.append(EarlyStopping(t.monitor, t.mode, t.early_stopping_patience))
    if t.progress:
        cbs.append(ProgressBar(show) if show else ProgressBar())
    return cbs


def finish_run(trainer: Trainer, run_dir: Path, val, test) -> dict[str, float]:
    """Reload the best epoch's weights and evaluate validation and test (None: a tuning trial,
    validation only); the caller adds what else it reports (e.g. CIs) and then calls
    :func:`write_results`."""
    barrier()
    best = run_dir / runs.CHECKPOINTS / "best"
    if best.with_suffix(".json").exists():
        load_model_weights(trainer.module, model_state(best), best.with_suffix(".safetensors"))
    metrics = {**trainer.evaluate(val, prefix="val"),
               **(trainer.evaluate(test, prefix="test") if test is not None else {})}
    best_cb = next((c for c in trainer.callbacks if isinstance(c, BestCheckpoint)), None)
    metrics["best_epoch"] = float(best_cb.best_epoch or trainer.epoch) if best_cb else float(trainer.epoch)
    metrics["epochs_trained"] = float(trainer.epoch)
    return metrics


def best_predictions(trainer: Trainer, run_dir: Path, sets: dict[str, Any]
                     ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """After training: the best epoch's validation and test metrics (:func:`finish_run`), the
    test split's (P, N, K) probabilities (P: MC-dropout passes, 1 without) and the validation
    split's (N, K), as float64."""
    metrics = finish_run(trainer, run_dir, sets["val"], sets["test"])
    return (metrics, trainer.predict_passes(sets["test"]).numpy().astype(np.float64),
            trainer.predict(sets["val"]).numpy().astype(np.float64))


class SoftmaxEnd:
    """What the inference ends of the softmax classifiers share (see
    :mod:`biodl.inference.predictor`): class outputs, the classes of ``preprocess.json``, and
    probabilities as they come."""

    output = "classes"

    def classes(self, pre: Any) -> list[str]:
        return list(pre.classes)

    def probabilities(self, outputs: torch.Tensor) -> np.ndarray:
        """(P, N, K) softmax outputs -> float64."""
        return outputs.numpy().astype(np.float64)


def without_test(config: BaseModel, parts: dict[str, Any]) -> dict[str, Any]:
    """A tuning trial's parts (``trial: true``): the test indices dropped, unread; else ``parts``."""
    return {k: v for k, v in parts.items() if k != "test"} if getattr(config, "trial", False) else parts


def finish_trial(trainer: Trainer, run_dir: Path, val, manifest: dict[str, Any], watch: "Stopwatch") -> Run:
    """The end of a tuning trial: the best epoch's validation metrics only (no test, no CIs)."""
    with watch("evaluate"):
        metrics = finish_run(trainer, run_dir, val, None)
    write_results(run_dir, metrics, manifest, watch=watch)
    return Run(run_dir, metrics, trainer)


def write_results(run_dir: Path, metrics: dict[str, float], manifest: dict[str, Any],
                  layout: dict[str, Any] | None = None, watch: Stopwatch | None = None) -> None:
    """metrics.json, the manifest's end time (and with ``watch`` the seconds per phase of the
    process that finished the run) and report.html (rank 0 only; ``layout``: extra report
    sections, see ``build_report``)."""
    if is_main_process():
        from ..report.run_report import build_report

        runs.write_metrics(run_dir, metrics)
        finish_manifest(run_dir, manifest, **({"seconds": watch.summary()} if watch is not None else {}))
        build_report(run_dir, layout)


def image_files(path: Path, extensions: tuple[str, ...]) -> list[Path]:
    """``path`` itself, or the images anywhere under the folder ``path`` (sorted); none is an error."""
    if path.is_dir():
        files = image_paths(path, recursive=True, extensions=extensions)
    elif path.is_file():
        files = [path]
    else:
        raise DataError(path, "no such file or folder")
    if not files:
        raise DataError(path, "no image files")
    return files


def refuse_overwrite(path: Path, overwrite: bool, folder: bool = False) -> None:
    """Refuse an output path that would replace earlier results without ``overwrite``, that is
    of the wrong kind (a folder where a file goes, or with ``folder``, the other way round), or
    that cannot be written (see :func:`biodl.io.check_writable`)."""
    if folder and path.exists() and not path.is_dir():
        raise RunDirError(path, "is a file; --out takes a folder for this run's outputs")
    if not folder and path.is_dir():
        raise RunDirError(path, "is a folder; --out takes a file path (e.g. predictions.csv)")
    if (path.exists() and not folder or folder and path.is_dir() and any(path.iterdir())) and not overwrite:
        raise RunDirError(path, "exists; pass --overwrite to replace it")
    check_writable(path, "--out", folder)


def make_trainer(config: BaseModel, model: torch.nn.Module, loss, metrics, postprocess, run_dir: Path | None,
                 device: torch.device, train: bool = True, optimizer=None, extra_callbacks: tuple = (),
                 show: tuple[str, ...] | None = None, batch_transform=None, eval_forward=None) -> Trainer:
    """A :class:`~biodl.engine.trainer.Trainer` set up from a run config: where a task enters the
    engine.

    Args:
        config: the run's config; ``trainer``, ``optimizer``, ``scheduler``, ``data.batch_size``,
            ``data.num_workers``, ``seed`` and ``model.mc_dropout`` are read from it.
        model: the network (see :func:`biodl.models.create_model`).
        loss: ``loss(outputs, targets)`` -> scalar tensor.
        metrics: a torchmetrics collection for evaluate, or None.
        postprocess: raw outputs -> probabilities (e.g. softmax over (B, K) logits).
        run_dir: the run directory: checkpoints and the callbacks of :func:`callbacks` (metrics.csv,
            TensorBoard, best checkpoint, early stopping, progress) write there; None writes nothing.
        device: from :func:`~biodl.engine.trainer.resolve_device`.
        train: False for evaluate/predict: no callbacks, no checkpoints, no ``torch.compile``.
        optimizer: an optimizer factory instead of the config's (e.g. per-group learning rates).
        extra_callbacks: added after the configured ones (e.g. unfreezing a backbone).
        show: the logs the progress bar prints each epoch.
        batch_transform, eval_forward: as for the Trainer (normalisation and augmentation on the
            device; test-time augmentation).

    Raises:
        ConfigError: ``model.mc_dropout`` on a model with no dropout layer.
    """
    from ..engine.optim import optimizer_factory, scheduler_factory

    t = config.trainer
    writing = train and run_dir is not None
    passes = getattr(config.model, "mc_dropout", 0)
    if passes and not dropout_layers(model):
        raise ConfigError("model.mc_dropout", f"the model ({config.model.name}) has no dropout layer with p > 0; "
                                              "give it one (e.g. model.args.dropout=0.2) or set mc_dropout: 0")
    return Trainer(
        model, loss, optimizer or optimizer_factory(config.optimizer), scheduler_factory(config.scheduler, t.epochs),
        metrics=metrics, postprocess=postprocess, max_epochs=t.epochs, batch_size=config.data.batch_size,
        num_workers=config.data.num_workers, seed=config.seed, device=device, precision=t.precision,
        compile=t.compile and train, grad_clip=t.grad_clip, scheduler_monitor=t.monitor,
        callbacks=[*callbacks(config, run_dir, show), *extra_callbacks, *added_callbacks()] if writing else [],
        checkpoint_dir=run_dir / runs.CHECKPOINTS if writing else None,
        checkpoint_every_steps=t.checkpoint_every_steps, config_hash=config_hash(config),
        batch_transform=batch_transform, eval_forward=eval_forward, mc_dropout=passes,
    )


def score_predictions(y: np.ndarray, prob: np.ndarray, classes: list[str],
                      score: Callable[[np.ndarray, np.ndarray], dict[str, float]], n_boot: int, prefix: str,
                      out_dir: Path | None, rows=None, patients: np.ndarray | None = None,
                      sources: list[str] | None = None, extra: dict[str, Any] | None = None,
                      after: dict[str, Any] | None = None,
                      points: tuple[str, ...] | bool = ()) -> dict[str, float]:
    """Percentile-bootstrap 95% CIs of ``score(y, prob)`` and the expected calibration error of
    (N, K) probabilities ``prob``. With ``patients`` ((N,) ids) the bootstrap resamples patients
    (a cluster bootstrap; ``<prefix>/ci_clusters`` records how many), else rows. With
    ``out_dir`` (rank 0), also ``<prefix>_predictions.csv`` (``rows``: each sample's index in
    the data set; ``sources``: its file; ``patients``; ``extra`` and ``after``: columns before and
    after the others, see ``save_predictions``). A metric that ``score`` finds undefined
    on the whole set (NaN: e.g. ROC AUC when ``y`` holds one class) comes back as NaN, replacing
    whatever number the engine's metrics gave, and is written as null. ``points`` names the
    metrics (``True``: all) whose value ``score`` gives too, where the engine computes none."""
    point = score(y, prob)
    undefined = {f"{prefix}/{k}": float("nan") for k, v in point.items() if not math.isfinite(v)}
    values = {f"{prefix}/{k}": v for k, v in point.items() if points is True or k in (points or ())}
    cis = bootstrap_cis(y, prob, score, n_boot, seed=0, groups=patients)
    _, ece = calibration_bins(y, prob)
    if out_dir is not None and is_main_process():
        save_predictions(out_dir, prefix, y, prob, classes, None if rows is None else np.asarray(rows),
                         sources=sources, patients=patients, extra=extra, after=after)
    clusters = {f"{prefix}/ci_clusters": float(len(np.unique(patients)))} if patients is not None else {}
    return {f"{prefix}/ece": ece, **values, **undefined, **clusters,
            **{f"{prefix}/{k}_ci_{side}": v for k, (lo, hi) in cis.items() for side, v in (("low", lo), ("high", hi))}}


def class_weights(labels: np.ndarray, classes: list[str], where: str | Path, what: str = "samples") -> torch.Tensor:
    """(K,) inverse-frequency loss weights of the training ``labels`` (N,) (mean 1 over samples);
    a class without training ``what`` is a DataError naming ``where``."""
    counts = np.bincount(labels, minlength=len(classes))
    if (counts == 0).any():
        empty = [classes[i] for i in np.flatnonzero(counts == 0)]
        raise DataError(where, f"classes without training {what}: {', '.join(empty)}")
    return torch.tensor(counts.sum() / (len(classes) * counts), dtype=torch.float32)


def weighted_cross_entropy(weights: torch.Tensor | None):
    """``loss(logits (B, K), targets (B,))``: cross-entropy, each class weighted by ``weights``
    (None: unweighted), in float32 whatever the autocast precision."""
    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out.float(), y, weight=None if weights is None
                                                 else weights.to(out.device))

    return loss
