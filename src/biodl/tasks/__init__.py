"""Tasks turn a config into data, model and engine: train, evaluate, predict (and explain).

Which module runs a task is the task registry's answer (:data:`biodl.config.TASKS`); adding a
task means registering its config class and module there, nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..config import task_spec


def get_task(name: str) -> ModuleType:
    """The module that runs task ``name`` (its ``train``, ``evaluate`` and ``predict``)."""
    from importlib import import_module

    return import_module(task_spec(name).module)


def task_command(name: str, command: str, where: str | Path | None = None) -> Callable[..., Any]:
    """The function behind ``biodl <command>`` for task ``name`` (one-line error if it has none)."""
    return task_spec(name, where or "task").command(command, where)


__all__ = ["get_task", "task_command"]
