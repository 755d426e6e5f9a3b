"""Deep ensembles (``ensemble: k``): k members trained from different seeds on the same split,
each a child run (see ``parents``) in ``RUN_DIR/members/member<k>``. The parent's predictions
are the mean of its members' probabilities; per case it adds the predictive entropy and the
members' disagreement (mutual information), referral curves by each, and fits its own
recalibration and conformal sets on the members' mean validation predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from .. import runs
from ..engine.distributed import is_main_process
from ..errors import RunDirError
from ..report.predictions import PROB, save_predictions
from ..report.tables import write_table
from .common import Stopwatch, Run, score_predictions
from .crossval import child_test_metrics
from .parents import train_children
from .trust import referral, trust, uncertainty_columns

__all__ = ["member_config", "train_ensemble"]


def member_config(config: BaseModel, k: int) -> BaseModel:
    """The parent's config for member ``k``: seed + k (initialisation, augmentation, batch order),
    the parent's split (its split seed kept), one model."""
    d = config.data
    data = d.model_copy(update={"split_seed": d.split_seed if d.split_seed is not None else config.seed})
    return config.model_copy(update={"name": f"{config.name}-member{k + 1}", "seed": config.seed + k, "ensemble": 1,
                                     "data": data})


def _read(run_dir: Path, k: int, prefix: str, classes: list[str]) -> pd.DataFrame:
    path = runs.member_dir(run_dir, k) / runs.predictions_file(prefix)
    try:
        df = pd.read_csv(path, keep_default_na=False, dtype={"patient": str, "source": str})
        df[[f"{PROB}{c}" for c in classes]].to_numpy(np.float64)  # every class column, numeric
    except (OSError, ValueError, KeyError) as exc:
        raise RunDirError(path, f"a member's predictions are missing or unreadable ({exc}); delete {path.parent} "
                                "and resume the ensemble (biodl train --resume --out RUN_DIR) to train that member "
                                "again") from None
    return df


def _stack(run_dir: Path, n: int, prefix: str, classes: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The first member's table and every member's (M, N, K) probabilities of the same rows."""
    tables = [_read(run_dir, k, prefix, classes) for k in range(n)]
    for k, t in enumerate(tables[1:], start=2):
        if not np.array_equal(t["row"].to_numpy(), tables[0]["row"].to_numpy()):
            raise RunDirError(runs.member_dir(run_dir, k - 1), f"member {k} was tested on other {prefix} rows than "
                                                               "member 1; its config was changed")
    return tables[0], np.stack([t[[f"{PROB}{c}" for c in classes]].to_numpy(np.float64) for t in tables])


def train_ensemble(config: BaseModel, out: str | Path | None, resume: bool, device: torch.device,
                   train_one: Callable[..., Run], score: Callable[[np.ndarray, np.ndarray], dict[str, float]],
                   classes: list[str], graded: bool, preprocess: dict[str, Any], extra: dict[str, Any],
                   watch: Stopwatch | None = None, inputs: dict[str, Path] | None = None) -> Run:
    """Train ``config.ensemble`` members with ``train_one(config, out, resume)`` and pool them
    (``inputs``: the data files the parent's manifest hashes)."""
    n = config.ensemble
    children = [(member_config(config, k), runs.member_dir("", k)) for k in range(n)]

    def pool(run_dir: Path) -> tuple[dict[str, float], list[dict[str, Any]]]:
        first, probs = _stack(run_dir, n, "test", classes)
        mean, parts = probs.mean(axis=0), uncertainty_columns(probs)
        y = first["label"].to_numpy(int)
        patients = first["patient"].to_numpy() if "patient" in first else None
        metrics = score_predictions(y, mean, classes, score, config.n_boot, "test", run_dir, first["row"].to_numpy(),
                                    patients, first["source"].tolist() if "source" in first else None,
                                    after=parts, points=True)
        val_first, val_probs = _stack(run_dir, n, "val", classes)
        val = (val_first["label"].to_numpy(int), val_probs.mean(axis=0))
        if is_main_process():
            save_predictions(run_dir, "val", *val, classes, val_first["row"].to_numpy())
        metrics.update(trust(run_dir, config, classes, graded, val, (y, mean), patients))
        metrics.update(referral(run_dir, y, mean, parts, patients=patients))
        table = [{"member": k + 1, "seed": config.seed + k,
                  **child_test_metrics(runs.read_metrics(runs.member_dir(run_dir, k) / runs.METRICS))}
                 for k in range(n)]
        for k, row in enumerate(table):
            metrics.update({f"member{k + 1}/{key}": v for key, v in row.items() if key not in ("member", "seed")})
        table.append({"member": "ensemble", "seed": None, **{key[5:]: metrics.get(key) for key in
                                                              (f"test/{m}" for m in table[0] if m not in
                                                               ("member", "seed"))}})
        if is_main_process():
            write_table(pd.DataFrame(table), run_dir / "members", f"The {n} members and their ensemble (test split)")
        text = ("The ensemble's probabilities are the mean of its members' (each trained from its own seed on the "
                "same split; runs in members/member<k>/). Per test case, test_predictions.csv gives the predictive "
                "entropy and the members' disagreement (mutual information).")
        return metrics, [{"title": "Ensemble", "text": text, "items": ["members"]}]

    return train_children(config, out, resume, device, children, train_one, preprocess, extra, pool, watch, inputs)
