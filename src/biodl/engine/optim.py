"""Optimisers and learning-rate schedulers from their config sections."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from ..config import OptimizerConfig, SchedulerConfig


__all__ = ["optimizer_factory", "scheduler_factory"]


def optimizer_factory(cfg: OptimizerConfig) -> Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]:
    """A function params -> optimiser (Adam, AdamW or SGD with momentum)."""

    def make(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if cfg.name == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.name == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    return make


def scheduler_factory(cfg: SchedulerConfig, epochs: int) -> Callable[[torch.optim.Optimizer], Any] | None:
    """A function optimiser -> per-epoch scheduler, or None for a constant learning rate."""
    if cfg.name == "none":
        return None

    def make(opt: torch.optim.Optimizer) -> Any:
        if cfg.name == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
        if cfg.name == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.gamma, patience=cfg.patience)

    return make
