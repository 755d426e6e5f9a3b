"""The task registry: task name -> the module that trains and evaluates its runs (and holds its
inference end, see :mod:`biodl.inference.predictor`). Config loading finds a task's config
class in :data:`biodl.config.RUN_CONFIGS`; everything that runs a task asks :data:`TASKS`.
Adding a task: its config class there, its module here."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from pydantic import BaseModel

from ..config import RUN_CONFIGS
from ..errors import ConfigError

__all__ = ["TaskSpec", "TASKS", "COMMANDS", "task_spec"]

#: what every task module defines
COMMANDS = ("train", "evaluate")


@dataclass(frozen=True)
class TaskSpec:
    """A task (``task:`` in a config) and the module (``biodl.tasks.<name>``) whose ``train`` and
    ``evaluate`` run it."""

    name: str
    module: str

    @property
    def config(self) -> type[BaseModel]:
        return RUN_CONFIGS[self.name]

    def load(self) -> ModuleType:
        return import_module(self.module)

    def command(self, name: str) -> Callable[..., Any]:
        """The function behind ``biodl <name>`` (``train``, ``evaluate``) for this task."""
        if name not in COMMANDS:
            raise ValueError(f"not a task command: {name!r}")
        return getattr(self.load(), name)


#: task name -> its spec
TASKS: dict[str, TaskSpec] = {name: TaskSpec(name, f"biodl.tasks.{name}") for name in RUN_CONFIGS}


def task_spec(name: Any, where: str | Path = "task") -> TaskSpec:
    """The registered task ``name``; an unknown name is a ConfigError suggesting the closest."""
    if name not in TASKS:
        close = difflib.get_close_matches(str(name), list(TASKS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(where, f"task: unknown task {name!r}; {hint}known: {', '.join(TASKS)}")
    return TASKS[name]
