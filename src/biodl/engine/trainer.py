"""The training loop: fit, evaluate, predict, with exact resume.

Written to be read. One epoch is: set the sampler's epoch, then for each batch
forward (under autocast when enabled), loss, backward, optional clipping,
optimiser step; then validation, the scheduler, the callbacks and the ``last``
checkpoint. The checkpoint holds everything the loop's future depends on
(weights, optimiser and scheduler state, RNG states, sampler position,
callback state), so a resumed run produces bit-identical weights on CPU.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchmetrics import MetricCollection

from ..errors import CheckpointError
from ..repro import get_rng_state, set_rng_state
from .callbacks import Callback
from .checkpoint import (check_training_state, join_tree, load_checkpoint, load_model_weights, recover, save_checkpoint,
                         split_tree)
from .distributed import all_reduce_sum, barrier, init_distributed, is_distributed, is_main_process, world
from .faults import crash_point
from .loaders import TrainLoader, eval_loader
from .preempt import Preempted, StopRequest

__all__ = ["resolve_device", "dropout_layers", "Trainer"]


LossFn = Callable[[Tensor, Tensor], Tensor]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda (this process's local rank under torchrun), then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", world()[2] % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        from ..errors import ConfigError

        raise ConfigError("trainer.device", f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError("trainer.device", "cuda requested but no CUDA device is available")
    return device


def _as_float(t: Tensor) -> float:
    """A metric as a Python float; float32 values keep their shortest decimal form (0.7, not 0.699999988)."""
    if t.dtype == torch.float32:
        import numpy as np

        return float(str(np.float32(t.item())))
    return float(t)


def _nhwc_safe_on_cpu(model: nn.Module) -> bool:
    """Whether channels_last (NHWC) may be used on the CPU, where it makes oneDNN convolutions
    faster (1.7x for DBRNet at 224 px, 1.4x for the small ResNet). Not with a strided 1x1
    convolution: oneDNN's NHWC weight gradient for it writes past its workspace with few input
    channels (uxlfoundation/oneDNN#6035; here a crash or heap corruption at odd batch sizes)."""
    return not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
                   for m in model.modules())


def dropout_layers(module: nn.Module) -> list[nn.Module]:
    """The (element or channel) dropout layers of ``module`` that drop something (p > 0)."""
    kinds = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
    return [m for m in module.modules() if isinstance(m, kinds) and m.p > 0]


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
        self.module = model.to(self.device)  # the plain model: its state_dict is what we save
        self.channels_last = self.device.type == "cuda" or (self.device.type == "cpu" and _nhwc_safe_on_cpu(model))
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.model: nn.Module = self.module
        if is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        self.forward = torch.compile(self.model) if compile else self.model
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" or (
            precision == "auto" and self.device.type == "cuda") else None
        self.loss_fn = loss_fn
        self.optimizer = optimizer_factory(self.module.parameters())
        self.scheduler = scheduler_factory(self.optimizer) if scheduler_factory else None
        self.scheduler_monitor = scheduler_monitor
        self.metrics = metrics.to(self.device) if metrics is not None else None
        self.postprocess = postprocess
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.grad_clip = grad_clip
        self.callbacks = list(callbacks or [])
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_every_steps = checkpoint_every_steps
        self.config_hash = config_hash
        self.batch_transform = batch_transform
        self.eval_forward = eval_forward or (lambda module, x: module(x))
        if mc_dropout and not dropout_layers(model):
            raise ValueError("MC dropout needs a model with a dropout layer (p > 0)")
        self.mc_dropout = mc_dropout
        self.epoch = 0  # completed epochs
        self.step = 0  # optimiser steps
        self.should_stop = False
        self.history: list[dict[str, float]] = []
        self.stop_request = StopRequest()  # SIGTERM / SIGUSR1 during fit: checkpoint, then Preempted

    # ------------------------------------------------------------------ helpers

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def prepare_batch(self, x: Tensor, train: bool = False) -> Tensor:
        """An input batch as the model sees it: on the trainer's device, through
        ``batch_transform`` (normalisation; with ``train``, augmentation too) and channels-last
        when 4-D, e.g. (B, C, H, W) uint8 -> float. For graph tracing and export examples."""
        x = x.to(self.device, non_blocking=True)
        if self.batch_transform is not None:
            x = self.batch_transform(x, train)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

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
            with self._autocast():
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
            with self._autocast():
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
        ``mc_dropout`` passes, their mean (see :meth:`predict_passes`)."""
        return self.predict_passes(data).mean(dim=0)

    @torch.no_grad()
    def predict_passes(self, data: Dataset) -> Tensor:
        """(P, N, ...) predictions of every sample: one pass (P = 1) of the model in eval mode,
        or with ``mc_dropout`` P > 0, Monte Carlo dropout (Gal & Ghahramani 2016): P thinned
        networks. Pass t keeps each dropout layer's units by one mask, drawn from (the trainer's
        seed, t, the layer) and shared by every sample, so a sample's prediction does not depend
        on the batch it comes in, the device or the global random state; batch norm stays in
        eval mode."""
        self.module.eval()
        if not self.mc_dropout:
            return self._predict(data).unsqueeze(0)
        return torch.stack([self._thinned(data, t) for t in range(self.mc_dropout)])

    def _thinned(self, data: Dataset, t: int) -> Tensor:
        """Pass ``t`` of MC dropout: every dropout layer multiplies its input by a fixed mask
        (units kept with probability 1 - p, scaled by 1 / (1 - p); whole channels for
        Dropout1d/2d/3d)."""
        masks: dict[tuple, Tensor] = {}

        def hook(index: int, layer: nn.Module):
            def apply(_m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
                shape = tuple(out.shape[1:])
                if isinstance(layer, (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
                    shape = shape[:1] + (1,) * (len(shape) - 1)
                key = (index, shape)
                if key not in masks:
                    g = torch.Generator().manual_seed(hash((self.seed, t, index)) & (2**63 - 1))
                    keep = (torch.rand(shape, generator=g) >= layer.p).float() / (1 - layer.p)
                    masks[key] = keep.to(out.device)
                return out * masks[key].to(out.dtype)
            return apply

        handles = [m.register_forward_hook(hook(i, m)) for i, m in enumerate(dropout_layers(self.module))]
        try:
            return self._predict(data)
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def infer(self, x: Tensor) -> Tensor:
        """``postprocess(eval_forward(model, batch_transform(x)))`` of one input batch, as
        evaluate and predict compute it (on the device, channels-last and autocast as in
        training): the one inference path, which tiled prediction also takes. The model's mode
        (eval, or MC dropout's) is the caller's. (B, ...) -> (B, ...) on the device."""
        with self._autocast():
            out = self.eval_forward(self.module, self.prepare_batch(x))
        return self.postprocess(out.float())

    def _predict(self, data: Dataset) -> Tensor:
        outs = []
        for batch in eval_loader(data, self.batch_size, self.num_workers, device=self.device):
            outs.append(self.infer(batch[0] if isinstance(batch, (tuple, list)) else batch).cpu())
        return torch.cat(outs) if outs else torch.empty(0)

    @torch.no_grad()
    def layer_inputs(self, data: Dataset, layer: nn.Module) -> Tensor:
        """What ``layer`` receives for every sample in ``data`` (its first input, flattened to
        (N, D), on the CPU), from a plain forward pass; e.g. the penultimate-layer features when
        ``layer`` is the classifier head."""
        captured: list[Tensor] = []
        handle = layer.register_forward_hook(lambda _m, inputs, _out: captured.append(
            inputs[0].detach().float().flatten(1).cpu()))
        try:
            self.module.eval()
            for batch in eval_loader(data, self.batch_size, self.num_workers, device=self.device):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                with self._autocast():
                    self.module(self.prepare_batch(x))
        finally:
            handle.remove()
        return torch.cat(captured) if captured else torch.empty(0)

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
