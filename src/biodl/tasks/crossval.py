"""k-fold cross-validation around a task's one-run training (``data.split: kfold``).

Each fold is a child run (see ``parents``) in ``RUN_DIR/folds/fold<k>`` (its config is the
parent's with ``data.fold`` set), tested on patients its model never saw. The parent run pools
the out-of-fold predictions: ``test_predictions.csv`` (with each image's fold), pooled metrics
with cluster-bootstrap CIs, each fold's metrics (``fold<k>/<metric>``) and a per-fold table. The
parent's model is the fold models together (the mean of their recalibrated probabilities),
built by the task when it loads the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from ..trust import calibration, conformal
from .. import runs
from ..engine.distributed import is_main_process
from ..report.predictions import PROB
from ..report.tables import write_table
from .common import Stopwatch, Run, score_predictions
from .parents import train_children
from .trust import add_prediction_column, referral, run_sets

__all__ = ["SLIDE_TEXT", "pooled_trust", "fold_config", "train_folds", "child_test_metrics"]


SLIDE_TEXT = ("Each patient's patches put back at their positions in the slide: the mosaic, the ground truth (class 1 "
              "red) and the predicted probability of class 1 (dark low, bright high), out of fold.")


def pooled_trust(run_dir: Path, config: BaseModel, fold: np.ndarray, y: np.ndarray, prob: np.ndarray,
                 patients: np.ndarray | None, classes: list[str]) -> dict[str, float]:
    """The pooled out-of-fold calibration before and after, and conformal set coverage and size,
    each row recalibrated and given its set by its own fold's maps (fitted on that fold's
    validation patients); the sets are added to the pooled ``test_predictions.csv``."""
    folds = int(fold.max()) if len(fold) else 0
    cals = [runs.read_calibration(runs.fold_dir(run_dir, k)) for k in range(folds)]
    after = None if any(c is None for c in cals) else calibration.apply_per_fold(prob, fold, cals)
    metrics = calibration.calibration_metrics(y, prob, after, "test", config.n_boot, patients)
    member = np.zeros(prob.shape, dtype=bool)
    for k in range(folds):
        rows = fold == k + 1
        sets = run_sets(runs.fold_dir(run_dir, k), prob[rows])
        if sets is None:
            return metrics
        member[rows] = sets
    metrics.update({f"test/conformal_{key}": v for key, v in conformal.set_scores(y, member).items()})
    if is_main_process():
        add_prediction_column(run_dir / runs.predictions_file("test"), "set", conformal.describe(member, classes))
    return metrics


def fold_config(config: BaseModel, k: int) -> BaseModel:
    """The parent's config for fold ``k`` alone."""
    data = config.data.model_copy(update={"fold": k})
    return config.model_copy(update={"name": f"{config.name}-fold{k + 1}", "data": data})


def train_folds(config: BaseModel, out: str | Path | None, resume: bool, device: torch.device,
                train_one: Callable[..., Run], score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
                classes: list[str], preprocess: dict[str, Any], extra: dict[str, Any],
                figures: Callable[[Path, pd.DataFrame], list[str]] | None = None,
                watch: Stopwatch | None = None, units: tuple[str, str] = ("images", "patients"),
                more: Callable[[Path], tuple[dict[str, float], list[dict[str, Any]]]] | None = None) -> Run:
    """Train every fold with ``train_one(config, out, resume)`` and pool their out-of-fold test
    predictions into the parent run; ``score(y, prob)`` gives the pooled metrics, and
    ``figures(run_dir, pooled predictions)`` may draw more figures (their names) for the report;
    ``units`` names the cases and their groups in the per-fold table; ``more(run_dir)`` pools
    what else the task's folds wrote (-> more metrics, more report sections)."""
    children = [(fold_config(config, k), runs.fold_dir("", k)) for k in range(config.data.folds)]

    def pool(run_dir: Path) -> tuple[dict[str, float], list[dict[str, Any]]]:
        if getattr(config, "trial", False):
            return _pool_validation(run_dir, config)
        metrics, sections = _pool_folds(run_dir, config, score, classes, figures, units)
        if more is not None:
            extra_metrics, extra_sections = more(run_dir)
            metrics.update(extra_metrics)
            sections += extra_sections
        return metrics, sections

    return train_children(config, out, resume, device, children, train_one, preprocess, extra, pool, watch)


def _pool_folds(run_dir: Path, config: BaseModel, score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
                classes: list[str], figures: Callable[[Path, pd.DataFrame], list[str]] | None,
                units: tuple[str, str] = ("images", "patients")) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The parent's metrics and report sections from its folds' out-of-fold predictions."""
    pooled = pd.concat([pd.read_csv(runs.fold_dir(run_dir, k) / runs.predictions_file("test"), keep_default_na=False,
                                    dtype={"patient": str, "source": str}).assign(fold=k + 1)
                        for k in range(config.data.folds)], ignore_index=True)
    y = pooled["label"].to_numpy(int)
    prob = pooled[[f"{PROB}{c}" for c in classes]].to_numpy(np.float64)
    patients = pooled["patient"].to_numpy() if "patient" in pooled else None
    parts = {k: pooled[k].to_numpy(np.float64) for k in ("entropy", "mutual_information") if k in pooled}
    metrics = score_predictions(y, prob, classes, score, config.n_boot, "test", run_dir, pooled["row"].to_numpy(),
                                patients, pooled["source"].tolist() if "source" in pooled else None,
                                extra={"fold": pooled["fold"].to_numpy()}, after=parts, points=True)
    if parts:
        metrics.update(referral(run_dir, y, prob, parts, patients=patients))
    metrics.update(pooled_trust(run_dir, config, pooled["fold"].to_numpy(), y, prob, patients, classes))
    table = []
    for k in range(config.data.folds):
        fm = runs.read_metrics(runs.fold_dir(run_dir, k) / runs.METRICS)
        part = pooled[pooled["fold"] == k + 1]
        row = {"fold": k + 1, f"test {units[0]}": len(part),
               f"test {units[1]}": part["patient"].nunique() if "patient" in part else None}
        row.update(child_test_metrics(fm))
        metrics.update({f"fold{k + 1}/{key}": v for key, v in child_test_metrics(fm).items()})
        table.append(row)
    write_table(pd.DataFrame(table), run_dir / "folds", f"Per fold ({config.data.folds} folds): each tested on "
                                                         f"{units[1] if 'patient' in pooled else units[0]} its model "
                                                         "never saw")
    sections = [{"title": "Folds", "text": "Pooled metrics above are over the out-of-fold predictions of every fold; "
                                           "each fold's own run is in folds/fold<k>/.", "items": ["folds"]}]
    maps = figures(run_dir, pooled) if figures is not None else []
    if maps:
        sections.append({"title": "Slide maps", "text": SLIDE_TEXT, "items": maps})
    return metrics, sections


def _pool_validation(run_dir: Path, config: BaseModel) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """A tuning trial's k-fold parent: each validation metric's mean over the folds (their
    test parts are never read), the epochs of all folds, and the per-fold table."""
    table, values = [], {}
    for k in range(config.data.folds):
        fm = runs.read_metrics(runs.fold_dir(run_dir, k) / runs.METRICS)
        own = {key: v for key, v in fm.items() if key.startswith("val/") and v is not None}
        table.append({"fold": k + 1, **{key[4:]: v for key, v in own.items()}})
        for key, v in own.items():
            values.setdefault(key, []).append(v)
        values.setdefault("epochs_trained", []).append(fm.get("epochs_trained") or 0)
    metrics = {key: float(np.mean(v)) for key, v in values.items()}
    metrics["epochs_trained"] = float(np.sum(values["epochs_trained"]))
    write_table(pd.DataFrame(table), run_dir / "folds", f"Per fold ({config.data.folds} folds), validation only: a "
                                                         "tuning trial, scored on the mean over the folds")
    return metrics, [{"title": "Folds", "text": "A tuning trial: each fold's validation metrics; no test part was "
                                                "read.", "items": ["folds"]}]


def child_test_metrics(metrics: dict[str, float | None]) -> dict[str, float | None]:
    """A child run's test metrics for its parent's table (no CIs; the calibration and set metrics,
    which the Trust section shows, but ECE)."""
    out = {}
    for key, v in sorted(metrics.items()):
        name = key[5:]
        trust = (name.startswith(("conformal_", "aurc_", "accuracy_refer")) or name == "mean_mutual_information"
                 or (name != "ece" and name.removesuffix("_after") in calibration.SCORES))
        if key.startswith("test/") and "_ci_" not in key and key != "test/ci_clusters" and not trust:
            out[name] = v
    return out
