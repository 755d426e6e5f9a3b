"""Invasive ductal carcinoma (IDC) in breast histopathology patches, binary.

By default on the embedded patients (``idc``: 4,982 H&E patches of 50 x 50 from 10 whole
patients, Kaggle's ``<patient>/<0|1>/<patient>_idx5_x<X>_y<Y>_class<C>.png`` layout); ``--data``
takes any other patient tree, the workshop's X.npy/Y.npy folder, or the full Kaggle set.
Patients are kept apart: the split is grouped by patient, and the test CIs resample patients.
Patches keep their pixels (``data.fit: pad``): the 6 smaller edge crops are padded with white.

Transfer learning: ``--set model.name=resnet18 --set model.pretrained=FILE`` (a torchvision
``resnet18-*.pth`` or a safetensors copy) or ``model.pretrained=imagenet`` (torchvision's file
in the torch hub cache; nothing is downloaded unless ``model.download=true``); its 1000-class
``fc`` layer is dropped and a new 2-class head is trained alone for ``model.freeze_epochs``
epochs (backbone frozen, its batch-norm statistics kept), then everything trains with the
backbone at ``lr x model.backbone_lr_factor``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NAME = "histopathology"
SUMMARY = "IDC in breast H&E patches (10 embedded patients, or --data): patient-grouped split, patient-level CIs"

CONFIG: dict[str, Any] = {
    "name": NAME,
    "task": "image",
    "seed": 0,
    "data": {"dataset": "idc", "classes": ["no IDC", "IDC"], "fit": "pad", "batch_size": 64},
    "model": {"name": "resnet_small", "args": {"width": 32, "blocks": 2, "dropout": 0.2}, "freeze_epochs": 2,
              "backbone_lr_factor": 0.1},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.05},
    "scheduler": {"name": "cosine"},
    "trainer": {"epochs": 8, "monitor": "val/roc_auc", "mode": "max"},
}


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    from . import run_config_study

    return run_config_study(CONFIG, NAME, out, overrides, data)
