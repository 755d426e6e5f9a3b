"""Training engine: the loop, callbacks, checkpoints and distributed helpers."""

from .callbacks import (
    BestCheckpoint,
    Callback,
    CSVLogger,
    EarlyStopping,
    ProgressBar,
    TensorBoardLogger,
    UnfreezeBackbone,
)
from .checkpoint import check_architecture, load_checkpoint, save_checkpoint
from .distributed import is_main_process
from .trainer import Trainer, resolve_device

__all__ = [
    "Trainer", "resolve_device", "Callback", "EarlyStopping", "BestCheckpoint", "CSVLogger", "TensorBoardLogger",
    "ProgressBar", "UnfreezeBackbone", "save_checkpoint", "load_checkpoint", "check_architecture",
    "is_main_process",
]
