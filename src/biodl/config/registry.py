"""Task name (``task:`` in a config) -> its config class."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel

from ..errors import ConfigError
from .images import ImageRunConfig, SegmentationRunConfig
from .mil import MilRunConfig
from .omics import CellsRunConfig, SequenceRunConfig
from .schemas import TabularRunConfig

__all__ = ["RunConfig", "RUN_CONFIGS", "config_class"]

#: the config of any run, whichever its task (for annotations; a run's own class comes from ``task``)
RunConfig = Union[TabularRunConfig, ImageRunConfig, SegmentationRunConfig, SequenceRunConfig, CellsRunConfig,
                  MilRunConfig]

#: task name (``task:`` in a config) -> its config class
RUN_CONFIGS: dict[str, type[BaseModel]] = {cls.model_fields["task"].default: cls
                                           for cls in (TabularRunConfig, ImageRunConfig, SegmentationRunConfig,
                                                       SequenceRunConfig, CellsRunConfig, MilRunConfig)}


def config_class(task: Any, where: str | Path = "task") -> type[BaseModel]:
    """The config class of task ``task``; an unknown name is a ConfigError suggesting the closest."""
    if task not in RUN_CONFIGS:
        close = difflib.get_close_matches(str(task), list(RUN_CONFIGS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(where, f"task: unknown task {task!r}; {hint}known: {', '.join(RUN_CONFIGS)}")
    return RUN_CONFIGS[task]
