"""Retinal vessel segmentation on the embedded CHASE_DB1 (28 fundus images, 999 x 960, two
observers): the usual protocol (images 01-10 train, 11-14 test; first observer = ground truth,
second observer = the human reference), a U-Net on green-channel CLAHE patches, FOV-only
metrics. Published for scale: U-Net AUC 0.9772 / F1 0.7783, IterNet 0.9851 / 0.8073.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["NAME", "CONFIG", "run"]


NAME = "vessels"

CONFIG: dict[str, Any] = {
    "name": NAME,
    "task": "segmentation",
    "seed": 0,
    # 4 epochs of 32,000 patches in bf16 autocast (2.3x faster steps on a CPU with avx512_bf16, the
    # GPU's precision already), maps the mean of each tile's 4 flips (validation AUC 0.9814 -> 0.9826):
    # chosen on validation children 09-10, benchmarks/vessels_cpu.py
    "data": {"dataset": "chase_db1", "test_images": 8, "channels": "green", "clahe": True, "patch": 64,
             "patches": 32000, "batch_size": 32},
    "model": {"name": "unet", "args": {"width": 16, "depth": 3, "dropout": 0.1}, "tta": True},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0001},
    "scheduler": {"name": "cosine"},
    "trainer": {"epochs": 4, "monitor": "train/loss", "mode": "min", "precision": "bf16"},
}


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    from . import run_config_study

    return run_config_study(CONFIG, NAME, out, overrides, data)
