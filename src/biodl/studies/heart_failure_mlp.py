"""A small MLP predicting death during follow-up from the 11 clinical features of the
heart-failure records (Chicco & Jurman 2020 data). Follow-up ``time`` is dropped: it
leaks the outcome (patients who died early have short follow-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import TabularRunConfig, build_config

__all__ = ["NAME", "CONFIG", "config", "run"]


NAME = "heart-failure-mlp"

CONFIG: dict[str, Any] = {
    "name": NAME,
    "task": "tabular",
    "seed": 0,
    "data": {
        "dataset": "heart-failure",
        "target": "DEATH_EVENT",
        "drop": ["time"],
        "binary": ["anaemia", "diabetes", "high_blood_pressure", "sex", "smoking"],
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "batch_size": 16,
    },
    "model": {"name": "mlp", "args": {"hidden": [32, 16], "dropout": 0.2}},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.01},
    "scheduler": {"name": "cosine"},
    "trainer": {"epochs": 60, "monitor": "val/loss", "mode": "min", "early_stopping_patience": 20},
}


def config(overrides: list[str] | None = None) -> TabularRunConfig:
    return build_config(CONFIG, overrides, where=f"study {NAME}")


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    from . import run_config_study

    return run_config_study(CONFIG, NAME, out, overrides, data)
