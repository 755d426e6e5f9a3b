"""The engine: the training loop, its inference half (the Inferer), callbacks, checkpoints and
distributed helpers."""

from .callbacks import (
    BestCheckpoint,
    Callback,
    CSVLogger,
    EarlyStopping,
    ProgressBar,
    TensorBoardLogger,
    UnfreezeBackbone,
)
from .checkpoint import check_architecture, load_checkpoint, model_state, save_checkpoint
from .distributed import is_main_process
from .inferer import Inferer, resolve_device
from .trainer import Trainer

__all__ = [
    "Trainer", "Inferer", "resolve_device", "Callback", "EarlyStopping", "BestCheckpoint", "CSVLogger",
    "TensorBoardLogger", "ProgressBar", "UnfreezeBackbone", "save_checkpoint", "load_checkpoint", "model_state",
    "check_architecture", "is_main_process",
]
