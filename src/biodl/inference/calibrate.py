"""``biodl calibrate RUN_DIR``: fit a recalibration on a finished classification run's validation
predictions (no retraining), store it as ``calibration.json`` where the run's predictor applies
it (:attr:`~biodl.inference.predictor.RunParts.recalibration_sites`: the run itself, an
ensemble's parent, or each fold of a k-fold parent on its own validation patients), and add the
test split's calibration metrics after it to ``metrics.json`` and the report. A conformal
predictor that takes recalibrated probabilities is refitted with it. A k-fold parent pools the
recalibrated out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..errors import ConfigError, RunDirError
from ..report.predictions import load_predictions
from ..tasks.crossval import pooled_trust
from ..tasks.registry import task_spec
from ..tasks.trust import compare_conformal, trust_of
from ..trust import calibration, conformal
from .predictor import RunParts

__all__ = ["calibrate_run"]


def _predictions(run_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
    """(labels, probabilities, class names, patients or None) of ``<prefix>_predictions.csv``."""
    path = run_dir / runs.predictions_file(prefix)
    if not path.is_file():
        raise RunDirError(run_dir, f"has no {path.name} (trained before biodl kept validation predictions, or "
                                   "not finished); train it again")
    return load_predictions(path)


def _after(run_dir: Path, metrics: dict[str, float | None], after: dict[str, float]) -> dict[str, float | None]:
    """``metrics`` without its earlier calibration and conformal-set metrics, with ``after``'s."""
    stale = {f"test/{s}{tail}" for s in calibration.SCORES for tail in ("", "_after", "_ci_low", "_ci_high",
                                                                        "_after_ci_low", "_after_ci_high")}
    return {**{k: v for k, v in metrics.items() if k not in stale and not k.startswith("test/conformal_")}, **after}


def calibrate_run(run_dir: str | Path, method: str = "temperature", overwrite: bool = False
                  ) -> tuple[dict[str, float], Path]:
    """Recalibrate ``run_dir`` with ``method``; returns (its metrics, the calibration file, or a
    k-fold parent's folds). Every fault (wrong task, a damaged run, no validation predictions, a
    method for two classes on more, an existing calibration without ``overwrite``) is raised
    before anything is written."""
    run_dir = Path(run_dir)
    config = runs.load_run_config(run_dir)
    if task_spec(config.task, run_dir).load().END.output != "classes":
        raise ConfigError(run_dir, f"biodl calibrate recalibrates classification runs (image, tabular); this is a "
                                   f"{config.task} run")
    parts = RunParts.load(run_dir)
    sites = parts.recalibration_sites
    for where in dict.fromkeys([run_dir, *sites]):
        if (where / runs.CALIBRATION).exists() and not overwrite:
            raise RunDirError(where / runs.CALIBRATION, "exists; pass --overwrite to replace it")
    fitted = []
    for where in sites:  # read and fit everything first: a fault leaves every file as it was
        y, prob, _, _ = val = _predictions(where, "val")
        cal = calibration.fit(method, y, prob, where=where / runs.predictions_file("val"))
        pred = runs.read_conformal(where)
        if pred is not None and pred.on == "recalibrated":  # its sets come from the new probabilities
            pred = conformal.fit(pred.method, y, cal.apply(prob), pred.alpha, pred.seed, str(where))
            pred.on = "recalibrated"
        fitted.append((cal, pred, val, _predictions(where, "test")))
    written: list[Path] = []
    try:  # without --overwrite, each calibration.json is created exclusively: of two concurrent runs, one fails
        for where, (cal, *_) in zip(sites, fitted, strict=True):
            written.append(runs.write_calibration(where, cal, exclusive=not overwrite))
    except BaseException:
        for path in written if not overwrite else []:
            path.unlink(missing_ok=True)
        raise
    for where, (cal, pred, val, test) in zip(sites, fitted, strict=True):
        if pred is not None:
            runs.write_conformal(where, pred)
        y, prob, classes, patients = test
        new = trust_of(RunParts.load(where), "test", y, prob, config.n_boot, patients,
                       where / runs.predictions_file("test"))
        if config.conformal.method != "none" and config.conformal.compare:
            graded = bool(getattr(config.data, "graded", False))
            new.update(compare_conformal(val[:2], (y, prob), cal, config.conformal.alpha, graded, config.seed))
        metrics = _update(where, new)
    if parts.kind == "kfold":  # the parent: its pooled predictions, each row recalibrated by its own fold's map
        y, prob, classes, patients = _predictions(run_dir, "test")
        metrics = _update(run_dir, pooled_trust(run_dir, config, _pooled_folds(run_dir), y, prob, patients, classes))
        return metrics, run_dir / runs.FOLDS
    return metrics, run_dir / runs.CALIBRATION


def _pooled_folds(run_dir: Path) -> np.ndarray:
    path = run_dir / runs.predictions_file("test")
    try:
        return pd.read_csv(path, usecols=["fold"])["fold"].to_numpy(int)
    except (OSError, ValueError, KeyError) as exc:
        raise RunDirError(path, f"no fold column ({exc}); was this k-fold run finished?") from None


def _update(run_dir: Path, after: dict[str, float]) -> dict[str, float]:
    from ..report.run_report import build_report

    metrics = _after(run_dir, runs.read_metrics(run_dir / runs.METRICS), after)
    runs.write_metrics(run_dir, metrics)
    build_report(run_dir)
    return metrics
