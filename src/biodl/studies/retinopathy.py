"""Diabetic-retinopathy grading on the embedded RetinaMNIST (MedMNIST v2): 1,600 fundus
photographs at 28 x 28, 5 grades, the official train/val/test split. Reports accuracy, macro
AUC and the quadratic weighted kappa with 95% bootstrap CIs on the official test split.
MedMNIST v2's best published baselines: accuracy 0.531, AUC 0.750.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ImageRunConfig, build_config

__all__ = ["NAME", "CONFIG", "config", "run"]


NAME = "retinopathy"

CONFIG: dict[str, Any] = {
    "name": NAME,
    "task": "image",
    "seed": 0,
    # unweighted loss: the MedMNIST baselines' accuracy rewards the majority grade
    "data": {"dataset": "retinamnist", "graded": True, "batch_size": 64, "augment": True, "balance": "none"},
    "model": {"name": "resnet_small", "args": {"width": 32, "blocks": 2, "dropout": 0.2}},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.05},
    "scheduler": {"name": "cosine"},
    "trainer": {"epochs": 40, "monitor": "val/roc_auc", "mode": "max"},
    # grades are ordered: a set of contiguous grades ("1-3") is what a grader can use
    "conformal": {"method": "ordinal"},
}


def config(overrides: list[str] | None = None) -> ImageRunConfig:
    return build_config(CONFIG, overrides, where=f"study {NAME}")


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    from . import run_config_study

    return run_config_study(CONFIG, NAME, out, overrides, data)
