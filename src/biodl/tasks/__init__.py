"""Tasks turn a config into data, model and engine: train a run, evaluate a trained one.

Which module runs a task is the task registry's answer (:data:`biodl.tasks.registry.TASKS`).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from .registry import TASKS, TaskSpec, task_spec


def get_task(name: str) -> ModuleType:
    """The module that runs task ``name`` (its ``train`` and ``evaluate``)."""
    return task_spec(name).load()


def task_command(name: str, command: str, where: str | Path | None = None) -> Callable[..., Any]:
    """The function behind ``biodl <command>`` for task ``name``."""
    return task_spec(name, where or "task").command(command)


__all__ = ["TASKS", "TaskSpec", "task_spec", "get_task", "task_command"]
