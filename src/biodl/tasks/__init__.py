"""Tasks turn a config into data, model and engine: train, evaluate and predict.

Each task module offers ``train(config, out, resume)``, ``evaluate(run_dir, ...)``
and ``predict(run_dir, input, ...)``; ``config.task`` picks the module.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import ConfigError


def get_task(name: str) -> ModuleType:
    if name == "tabular":
        from . import tabular

        return tabular
    if name == "image":
        from . import image

        return image
    if name == "segmentation":
        from . import segmentation

        return segmentation
    raise ConfigError("task", f"unknown task {name!r}; known: tabular, image, segmentation")
