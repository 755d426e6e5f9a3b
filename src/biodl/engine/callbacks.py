"""Training callbacks: early stopping, best checkpoint, progress, metrics.csv, TensorBoard.

A callback sees the trainer at a few points of the loop. Callbacks with state
(best value so far, patience left, rows logged) save it in the ``last``
checkpoint, so a resumed run behaves as if it had never stopped. File-writing
callbacks act on rank 0 only.
"""

from __future__ import annotations

import csv
import io
import math
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from ..errors import ConfigError
from ..io import atomic_write_text
from .distributed import is_main_process

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


__all__ = [
    "Trainer", "Callback", "Monitor", "EarlyStopping", "BestCheckpoint", "CSVLogger", "TensorBoardLogger",
    "ProgressBar", "UnfreezeBackbone", "STUCK", "warn_if_stuck", "with_callbacks", "added_callbacks",
]

#: callbacks every trainer built for a run adds, while a :func:`with_callbacks` block lasts
_ADDED: ContextVar[tuple["Callback", ...]] = ContextVar("biodl_added_callbacks", default=())


@contextmanager
def with_callbacks(*callbacks: "Callback") -> Iterator[None]:
    """Give ``callbacks`` to every run trained in this block (e.g. a tuning trial's pruner), on
    top of those its config asks for; the run's code need not know."""
    token = _ADDED.set(_ADDED.get() + callbacks)
    try:
        yield
    finally:
        _ADDED.reset(token)


def added_callbacks() -> tuple["Callback", ...]:
    """The callbacks of the enclosing :func:`with_callbacks` blocks."""
    return _ADDED.get()


class Trainer(Protocol):
    """What a callback may read and do to the trainer that calls it (``engine.Trainer`` is one);
    callbacks depend on this, not on the trainer module, so the dependency points one way."""

    epoch: int  # completed epochs
    max_epochs: int
    should_stop: bool
    module: "nn.Module"

    def save_weights(self, prefix: str | Path, meta: dict[str, Any] | None = None) -> None: ...


class Callback:
    """Base class; override what you need. ``logs`` maps metric names to floats."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_epoch_start(self, trainer: "Trainer", n_batches: int) -> None: ...

    def on_train_batch_end(self, trainer: "Trainer", batch_idx: int) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: "Trainer") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Monitor:
    """Tracks the best value of one logged metric (``mode`` min or max)."""

    def __init__(self, monitor: str, mode: str = "min", min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ConfigError("trainer.mode", f"must be min or max, got {mode!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.best: float | None = None

    def value(self, logs: dict[str, float]) -> float:
        if self.monitor not in logs:
            raise ConfigError("trainer.monitor", f"'{self.monitor}' is not logged; logged: {', '.join(logs)}")
        return float(logs[self.monitor])

    def improved(self, logs: dict[str, float]) -> bool:
        """Update the best value; True when this epoch beats it."""
        v = self.value(logs)
        if math.isnan(v):
            return False
        better = (
            self.best is None
            or (self.mode == "min" and v < self.best - self.min_delta)
            or (self.mode == "max" and v > self.best + self.min_delta)
        )
        if better:
            self.best = v
        return better


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs."""

    def __init__(self, monitor: str, mode: str = "min", patience: int = 10, min_delta: float = 0.0) -> None:
        self.tracker = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.wait = 0

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        if self.tracker.improved(logs):
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.tracker.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.best, self.wait = state["best"], state["wait"]


class BestCheckpoint(Callback):
    """Save the model weights as ``best.safetensors`` / ``best.json`` when ``monitor`` improves."""

    def __init__(self, dirpath: str | Path, monitor: str, mode: str = "min") -> None:
        self.dirpath = Path(dirpath)
        self.tracker = Monitor(monitor, mode)
        self.best_epoch: int | None = None

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        if self.tracker.improved(logs):
            self.best_epoch = trainer.epoch
            if is_main_process():
                trainer.save_weights(
                    self.dirpath / "best", {"monitor": self.tracker.monitor, "value": self.tracker.best, "logs": logs}
                )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.tracker.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tracker.best, self.best_epoch = state["best"], state["best_epoch"]


class CSVLogger(Callback):
    """``metrics.csv``: one row per epoch, rewritten atomically (never a torn line)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        self.rows.append(dict(logs))
        if not is_main_process():
            return
        fields: list[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state["rows"]]


def _cell(value: Any) -> Any:
    """A metrics.csv cell: an undefined (NaN) metric is left empty, never written as ``nan``."""
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


class TensorBoardLogger(Callback):
    """Scalars per epoch (x axis: epoch) to a TensorBoard event file in ``log_dir``."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        if is_main_process():
            from torch.utils.tensorboard import SummaryWriter

            # on resume, drop whatever a killed run logged after its checkpoint
            self.writer = SummaryWriter(str(self.log_dir), purge_step=trainer.epoch + 1 if trainer.epoch else None)

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in logs.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, global_step=trainer.epoch)
            self.writer.flush()

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ProgressBar(Callback):
    """A rich progress bar over the batches of each epoch and one summary line per epoch."""

    def __init__(self, show: tuple[str, ...] = ("train/loss", "val/loss", "val/mcc", "val/roc_auc", "lr")) -> None:
        self.show = show
        self.progress = None
        self.task = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        if not is_main_process():
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

        from ..progress import progress_bar

        self.progress = progress_bar(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn())
        self.progress.start()
        self.task = self.progress.add_task("train", total=None, epoch=0)

    def on_epoch_start(self, trainer: "Trainer", n_batches: int) -> None:
        if self.progress is not None:
            self.progress.reset(self.task, total=n_batches, epoch=f"{trainer.epoch + 1}/{trainer.max_epochs}")

    def on_train_batch_end(self, trainer: "Trainer", batch_idx: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=batch_idx + 1)

    def on_epoch_end(self, trainer: "Trainer", logs: dict[str, float]) -> None:
        if self.progress is not None:
            shown = "  ".join(f"{k} {logs[k]:.4g}" for k in self.show if k in logs)
            self.progress.console.print(f"epoch {trainer.epoch:>3}/{trainer.max_epochs}  {shown}", highlight=False,
                                        soft_wrap=True)

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class UnfreezeBackbone(Callback):
    """Transfer learning: keep ``model.features`` frozen for the first ``after_epochs`` epochs,
    then train it. Decided from the epoch number alone, so a resumed run does the same."""

    def __init__(self, after_epochs: int) -> None:
        self.after_epochs = after_epochs

    def on_epoch_start(self, trainer: "Trainer", n_batches: int) -> None:
        from ..models.transfer import set_backbone_trainable

        set_backbone_trainable(trainer.module, trainer.epoch >= self.after_epochs)


#: a training loss that moves less than this share over every epoch has not moved
STUCK = 1e-3


def warn_if_stuck(history: list[dict[str, float]]) -> None:
    """Warn when the training loss never left its first epoch's value (3 epochs or more): the
    network learned nothing, e.g. every unit of a ReLU layer died in the first steps."""
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    if len(losses) >= 3 and losses[0] > 1e-3 and (max(losses) - min(losses)) < STUCK * losses[0]:
        import warnings

        warnings.warn(f"the training loss stayed at {losses[0]:.4f} for all {len(losses)} epochs: the network learned "
                      "nothing (dead units?); try a lower learning rate (optimizer.lr) or another seed", stacklevel=3)
