"""The training loop: fit, evaluate, predict, with exact resume.

Written to be read. One epoch is: set the sampler's epoch, then for each batch
forward (under autocast when enabled), loss, backward, optional clipping,
optimiser step; then validation, the scheduler, the callbacks and the ``last``
checkpoint. The checkpoint holds everything the loop's future depends on
(weights, optimiser and scheduler state, RNG states, sampler position,
callback state), so a resumed run produces bit-identical weights on CPU.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchmetrics import MetricCollection

from ..errors import BiodlError, CheckpointError
from ..repro import get_rng_state, set_rng_state
from .callbacks import Callback, warn_if_stuck
from .checkpoint import (check_training_state, join_tree, load_checkpoint, load_model_weights, recover, save_checkpoint,
                         split_tree)
from .distributed import all_reduce_sum, barrier, init_distributed, is_distributed, is_main_process
from .faults import crash_point
from .inferer import Inferer, resolve_device
from .loaders import TrainLoader, eval_loader
from .preempt import Preempted, StopRequest

__all__ = ["Trainer"]


LossFn = Callable[[Tensor, Tensor], Tensor]


def _as_float(t: Tensor) -> float:
    """A metric as a Python float; float32 values keep their shortest decimal form (0.7, not 0.699999988)."""
    if t.dtype == torch.float32:
        import numpy as np

        return float(str(np.float32(t.item())))
    return float(t)


class Trainer:
    """Supervised training of ``model`` with ``loss_fn(outputs, targets)``: ``fit``, ``evaluate``,
    ``predict``, exact resume from ``checkpoint_dir``, DDP under torchrun.

    Data are map-style datasets of ``(inputs, targets)`` pairs; the batches come by the cheapest
    route that gives the exact order of (``seed``, epoch) (see :mod:`biodl.engine.loaders`).

    Args:
        model: the network; moved to ``device`` (channels-last on CUDA, and on the CPU where
            that is safe). Its ``state_dict`` is what checkpoints hold.
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar tensor, the mean over the batch.
        optimizer_factory: ``params -> torch.optim.Optimizer`` (built here, on the model's
            parameters on the device).
        scheduler_factory: ``optimizer -> scheduler``, stepped once per epoch;
            ``ReduceLROnPlateau`` is stepped with ``logs[scheduler_monitor]`` (default ``val/loss``).
        metrics: torchmetrics collection updated with ``(postprocess(outputs), targets)`` in
            ``evaluate`` (DDP-aware: every rank's shard counts).
        postprocess: raw outputs -> what metrics and ``predict`` use, e.g. ``sigmoid`` of (B, 1)
            logits -> (B,) probabilities.
        max_epochs: epochs of ``fit`` (a callback may stop it earlier).
        batch_size: per process; under DDP the effective batch is ``batch_size * world_size``.
        num_workers: DataLoader worker processes; 0 (best for image sets in memory or in the
            disk cache) reads ahead with threads instead.
        seed: the data order (a function of seed and epoch), worker seeds and MC-dropout masks.
        device: ``auto`` (this process's CUDA device under torchrun, else mps, else cpu),
            ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``auto`` (bf16 autocast on CUDA, float32 elsewhere), ``bf16`` or ``32``.
        compile: ``torch.compile`` the forward pass for training.
        grad_clip: clip the gradients' global L2 norm to this before each step.
        scheduler_monitor: the logged metric a ``ReduceLROnPlateau`` follows.
        callbacks: :class:`~biodl.engine.callbacks.Callback` s (early stopping, best checkpoint,
            loggers, progress bar), called in order.
        checkpoint_dir: where ``last`` is saved after every epoch (and every
            ``checkpoint_every_steps`` steps, and on SIGTERM/SIGUSR1), and resumed from.
        checkpoint_every_steps: also save ``last`` every this many optimiser steps (0: per epoch only).
        config_hash: recorded in checkpoints; resuming refuses a checkpoint of another config.
        batch_transform: ``batch_transform(x, train)`` on each input batch, on the device (e.g.
            uint8 -> normalised floats, augmented when ``train``).
        eval_forward: ``eval_forward(module, x)`` replaces ``module(x)`` in evaluate and predict
            (e.g. test-time augmentation).
        mc_dropout: Monte Carlo dropout passes for ``predict_passes`` (0: one plain pass).

    Example:
        >>> trainer = Trainer(model, nn.CrossEntropyLoss(), lambda p: torch.optim.AdamW(p, 1e-3),
        ...                   max_epochs=5, batch_size=64, checkpoint_dir="run/checkpoints")
        >>> history = trainer.fit(train_set, val_set)  # one dict of logs per epoch
        >>> prob = trainer.predict(test_set)  # (N, ...) postprocessed outputs, on the CPU
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        scheduler_factory: Callable[[torch.optim.Optimizer], Any] | None = None,
        *,
        metrics: MetricCollection | None = None,
        postprocess: Callable[[Tensor], Tensor] = lambda t: t,
        max_epochs: int = 10,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        device: str | torch.device = "auto",
        precision: str = "auto",
        compile: bool = False,
        grad_clip: float | None = None,
        scheduler_monitor: str | None = None,
        callbacks: list[Callback] | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every_steps: int = 0,
        config_hash: str | None = None,
        batch_transform: Callable[[Tensor, bool], Tensor] | None = None,
        eval_forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
        mc_dropout: int = 0,
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        init_distributed(self.device)
        self.rank, self.world_size = 0, 1
        if is_distributed():
            self.rank, self.world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        #: the inference half: evaluate, predict and tiled prediction run through it
        self.inferer = Inferer(model, device=self.device, precision=precision, batch_transform=batch_transform,
                               eval_forward=eval_forward, postprocess=postprocess, batch_size=batch_size,
                               num_workers=num_workers, mc_dropout=mc_dropout, seed=seed)
        self.module = self.inferer.module  # the plain model: its state_dict is what we save
        self.model: nn.Module = self.module
        if is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        self.forward = torch.compile(self.model) if compile else self.model
        self.loss_fn = loss_fn
        self.optimizer = optimizer_factory(self.module.parameters())
        self.scheduler = scheduler_factory(self.optimizer) if scheduler_factory else None
        self.scheduler_monitor = scheduler_monitor
        self.metrics = metrics.to(self.device) if metrics is not None else None
        self.max_epochs = max_epochs
        self.seed = seed
        self.grad_clip = grad_clip
        self.callbacks = list(callbacks or [])
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_every_steps = checkpoint_every_steps
        self.config_hash = config_hash
        self.epoch = 0  # completed epochs
        self.step = 0  # optimiser steps
        self.should_stop = False
        self.history: list[dict[str, float]] = []
        self.stop_request = StopRequest()  # SIGTERM / SIGUSR1 during fit: checkpoint, then Preempted

    # ------------------------------------------------------------------ helpers

    # the inference settings live in the inferer
    @property
    def postprocess(self) -> Callable[[Tensor], Tensor]:
        return self.inferer.postprocess

    @property
    def batch_transform(self) -> Callable[[Tensor, bool], Tensor] | None:
        return self.inferer.batch_transform

    @property
    def eval_forward(self) -> Callable[[nn.Module, Tensor], Tensor]:
        return self.inferer.eval_forward

    @property
    def mc_dropout(self) -> int:
        return self.inferer.mc_dropout

    @mc_dropout.setter
    def mc_dropout(self, passes: int) -> None:
        self.inferer.mc_dropout = passes

    @property
    def batch_size(self) -> int:
        """Per process, for training and prediction alike."""
        return self.inferer.batch_size

    @batch_size.setter
    def batch_size(self, size: int) -> None:
        self.inferer.batch_size = size

    @property
    def num_workers(self) -> int:
        return self.inferer.num_workers

    @property
    def channels_last(self) -> bool:
        return self.inferer.channels_last

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return self.inferer.autocast_dtype

    def prepare_batch(self, x: Tensor, train: bool = False) -> Tensor:
        """An input batch as the model sees it (see :meth:`Inferer.prepare_batch`)."""
        return self.inferer.prepare_batch(x, train)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    # ------------------------------------------------------------------ fit

    def fit(self, train_data: Dataset, val_data: Dataset | None = None, resume: bool = False,
            sample_weights: Tensor | None = None) -> list[dict[str, float]]:
        """Train for ``max_epochs`` (or until a callback stops it); returns one log dict per epoch.

        ``resume=True`` continues from ``checkpoint_dir/last`` when it exists. ``sample_weights``
        (N,): draw each epoch's N training samples with replacement in proportion to them
        (e.g. a class-balanced sampler) instead of a permutation.
        """
        loader = TrainLoader(train_data, self.batch_size, self.seed, self.num_workers, self.rank, self.world_size,
                             device=self.device, weights=sample_weights)
        val_loader = (
            eval_loader(val_data, self.batch_size, self.num_workers, self.rank, self.world_size, self.device)
            if val_data is not None else None
        )
        start_batch, partial = 0, (0.0, 0)
        if resume and self.checkpoint_dir:
            recover(self.checkpoint_dir / "last")  # finish or roll back a commit a kill interrupted
            if (self.checkpoint_dir / "last.json").exists():
                start_batch, partial = self._restore(self.checkpoint_dir / "last")
        self._call("on_fit_start")
        with self.stop_request:
            while self.epoch < self.max_epochs and not self.should_stop:
                logs = self._train_epoch(loader, start_batch, partial)
                start_batch, partial = 0, (0.0, 0)
                if not math.isfinite(logs["train/loss"]):  # before any checkpoint keeps the diverged weights
                    raise BiodlError("training", f"diverged: the training loss of epoch {self.epoch + 1} is "
                                                 f"{logs['train/loss']}; lower the learning rate (optimizer.lr) or "
                                                 "clip gradients (trainer.grad_clip). The last finite checkpoint "
                                                 "is kept")
                if val_loader is not None:
                    logs.update(self.evaluate(val_loader, prefix="val"))
                logs["lr"] = self.optimizer.param_groups[0]["lr"]
                if self.scheduler is not None:
                    if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        self.scheduler.step(logs[self.scheduler_monitor or "val/loss"])
                    else:
                        self.scheduler.step()
                self.epoch += 1
                logs = {"epoch": self.epoch, **logs}
                self.history.append(logs)
                self._call("on_epoch_end", logs)
                self._save_last(batches_done=0, partial=(0.0, 0))
                self._stop_if_asked(always=True)
        warn_if_stuck(self.history)
        self._call("on_fit_end")
        return self.history

    def _stop_if_asked(self, always: bool = False) -> None:
        """After a step or an epoch, whose state ``last`` now holds: raise :class:`Preempted` if
        a stop signal came (once every rank is past the save)."""
        signum = self.stop_request.agreed(self.step, self.device, always)
        if signum is not None:
            barrier()  # no rank exits (which may end the job) while rank 0 is still saving
            raise Preempted(signum, self.epoch, self.step)

    def _train_epoch(self, loader: TrainLoader, start_batch: int, partial: tuple[float, int]) -> dict[str, float]:
        self.model.train()
        loader.set_epoch(self.epoch, start_batch)
        self._call("on_epoch_start", len(loader) + start_batch)
        loss_sum = torch.tensor(partial[0], dtype=torch.float64, device=self.device)
        count = partial[1]
        for batch_idx, (x, y) in enumerate(loader, start=start_batch):
            x, y = self.prepare_batch(x, train=True), y.to(self.device, non_blocking=True)
            with self.inferer.autocast():
                out = self.forward(x)
                loss = self.loss_fn(out, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
            self.optimizer.step()
            self.step += 1
            loss_sum.add_(loss.detach(), alpha=len(y))
            count += len(y)
            crash_point("step")
            self._call("on_train_batch_end", batch_idx)
            saved = self.checkpoint_every_steps and self.step % self.checkpoint_every_steps == 0
            if saved or self.stop_request.agreed(self.step, self.device) is not None:
                self._save_last(batches_done=batch_idx + 1, partial=(float(loss_sum), count))
                self._stop_if_asked(always=True)
        n = torch.tensor(float(count), dtype=torch.float64, device=self.device)
        totals = all_reduce_sum(torch.stack([loss_sum, n]))
        return {"train/loss": float(totals[0] / totals[1].clamp_min(1))}

    # ------------------------------------------------------------------ evaluate / predict

    @torch.no_grad()
    def evaluate(self, data: Dataset | Iterable, prefix: str = "test") -> dict[str, float]:
        """Loss and metrics over ``data`` (a Dataset or a loader); under DDP each rank takes a shard."""
        loader = data if not isinstance(data, Dataset) else eval_loader(
            data, self.batch_size, self.num_workers, self.rank, self.world_size, self.device)
        self.module.eval()
        if self.metrics is not None:
            self.metrics.reset()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for x, y in loader:
            x, y = self.prepare_batch(x), y.to(self.device, non_blocking=True)
            with self.inferer.autocast():
                out = self.eval_forward(self.module, x)
                loss = self.loss_fn(out, y)
            totals[0] += loss.double() * len(y)
            totals[1] += len(y)
            if self.metrics is not None:
                self.metrics.update(self.postprocess(out.float()), y)
        all_reduce_sum(totals)
        logs = {f"{prefix}/loss": float(totals[0] / totals[1].clamp_min(1))}
        if self.metrics is not None:
            logs.update({f"{prefix}/{k}": _as_float(v) for k, v in self.metrics.compute().items()})
        return logs

    def predict(self, data: Dataset) -> Tensor:
        """``postprocess(model(x))`` for every sample, in order, on the CPU: (N, ...); with
        ``mc_dropout`` passes, their mean (see :meth:`Inferer.predict_passes`)."""
        return self.inferer.predict(data)

    def predict_passes(self, data: Dataset) -> Tensor:
        """(P, N, ...) predictions of every sample (see :meth:`Inferer.predict_passes`)."""
        return self.inferer.predict_passes(data)

    def infer(self, x: Tensor) -> Tensor:
        """One input batch through the inference path (see :meth:`Inferer.infer`)."""
        return self.inferer.infer(x)

    def layer_inputs(self, data: Dataset, layer: nn.Module) -> Tensor:
        """What ``layer`` receives for every sample (see :meth:`Inferer.layer_inputs`)."""
        return self.inferer.layer_inputs(data, layer)

    # ------------------------------------------------------------------ checkpoints

    def save_weights(self, prefix: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Model weights only (e.g. ``best``), with epoch, step and ``meta`` in the JSON."""
        save_checkpoint(prefix, dict(self.module.state_dict()),
                        {"kind": "weights", "epoch": self.epoch, "step": self.step,
                         "config_hash": self.config_hash, **(meta or {})})

    def _save_last(self, batches_done: int, partial: tuple[float, int]) -> None:
        if self.checkpoint_dir is None or not is_main_process():
            return
        tensors: dict[str, Tensor] = {}
        for k, v in self.module.state_dict().items():
            tensors[f"model.{k}"] = v
        meta = {
            "kind": "training",
            "epoch": self.epoch,
            "step": self.step,
            "should_stop": self.should_stop,
            "sampler": {"epoch": self.epoch, "batches_done": batches_done, "batch_size": self.batch_size,
                        "seed": self.seed, "world_size": self.world_size},
            "partial_train_loss": {"sum": partial[0], "count": partial[1]},
            "rng": get_rng_state(),
            "config_hash": self.config_hash,
            "optimizer": split_tree(self.optimizer.state_dict(), "optimizer", tensors),
            "scheduler": split_tree(self.scheduler.state_dict(), "scheduler", tensors) if self.scheduler else None,
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
            "saved": time.time(),
        }
        save_checkpoint(self.checkpoint_dir / "last", tensors, meta)

    def _restore(self, prefix: Path) -> tuple[int, tuple[float, int]]:
        tensors, meta = load_checkpoint(prefix)
        where = prefix.with_suffix(".json")
        check_training_state(meta, where)
        if self.config_hash and meta.get("config_hash") != self.config_hash:
            raise CheckpointError(where, "was made with a different config; resume with the run's own config.yaml")
        s = meta["sampler"]
        if (s["batch_size"], s["seed"], s["world_size"]) != (self.batch_size, self.seed, self.world_size):
            raise CheckpointError(where, f"sampler mismatch: saved batch_size/seed/world_size {s['batch_size']}/"
                                  f"{s['seed']}/{s['world_size']}, now {self.batch_size}/{self.seed}/{self.world_size}")
        model_w = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        load_model_weights(self.module, model_w, prefix.with_suffix(".safetensors"))
        try:  # the structure is checked; what is left to fail is content that does not fit this run
            self.optimizer.load_state_dict(join_tree(meta["optimizer"], tensors))
            if self.scheduler is not None and meta.get("scheduler") is not None:
                self.scheduler.load_state_dict(join_tree(meta["scheduler"], tensors))
            states = meta.get("callbacks", {})
            for cb in self.callbacks:
                if type(cb).__name__ in states:
                    cb.load_state_dict(states[type(cb).__name__])
            set_rng_state(meta["rng"])
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            raise CheckpointError(where, f"training state does not fit this run ({exc.__class__.__name__}: "
                                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        self.epoch, self.step, self.should_stop = meta["epoch"], meta["step"], meta["should_stop"]
        p = meta["partial_train_loss"]
        return s["batches_done"], (p["sum"], p["count"])
