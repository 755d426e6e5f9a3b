"""Invasive ductal carcinoma (IDC) in breast histopathology patches, binary, with transfer learning.

No IDC data set is embedded (none is in the project's shared data yet), so the study needs
``--data``: the workshop's reduced Kaggle set (a folder with X.npy, N x 50 x 50 x 3 uint8, and
Y.npy, 0/1), or the original patch tree ``<patient>/<0|1>/*.png`` (patients are kept apart).

Transfer learning, exactly: a ResNet-18 whose backbone weights come from a local file given
as ``--set model.pretrained=PATH`` (a torchvision ``resnet18-*.pth`` or a safetensors copy;
nothing is downloaded); its 1000-class ``fc`` layer is dropped and a new 2-class head is
trained alone for ``model.freeze_epochs`` epochs (backbone frozen, its batch-norm statistics
kept), then everything trains with the backbone at ``lr x model.backbone_lr_factor``.
Without ``model.pretrained`` the same network trains from random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BiodlError

NAME = "histopathology"
SUMMARY = "IDC patches (your --data: X.npy/Y.npy or patient folders): ResNet-18, transfer learning from a local file"
EXPECTS = ("needs --data: a folder with X.npy (N x 50 x 50 x 3 uint8) and Y.npy (0/1), or patch folders "
           "<patient>/<0|1>/*.png; get the IDC set from Kaggle 'Breast Histopathology Images' (Janowczyk & "
           "Madabhushi 2016)")

CONFIG: dict[str, Any] = {
    "name": NAME,
    "task": "image",
    "seed": 0,
    "data": {"classes": ["no IDC", "IDC"], "size": 64, "batch_size": 64},  # path: from --data
    "model": {"name": "resnet18", "freeze_epochs": 2, "backbone_lr_factor": 0.1},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
    "scheduler": {"name": "step", "step_size": 7, "gamma": 0.1},
    "trainer": {"epochs": 15, "monitor": "val/roc_auc", "mode": "max"},
}


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    from . import run_config_study

    if data is None:
        raise BiodlError(f"study {NAME}", EXPECTS)
    return run_config_study(CONFIG, NAME, out, overrides, data)
