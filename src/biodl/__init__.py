"""biodl: reproducible deep learning for the health and life sciences.

The public API is small. Runs: ``train`` (a config, or data alone) and ``run_study`` give a
``Run``; ``load`` makes a finished run a ``Predictor`` (predict, evaluate, explain, export all use
it); ``load_config``, ``seed_everything`` and ``BiodlError`` (every user fault). Underneath:
the engine's ``Trainer`` and the model registry (``create_model``, ``list_models``).
Names load on first use, so ``import biodl`` (and ``biodl --version``) stays fast.

    >>> import biodl
    >>> run = biodl.train("my_images/", epochs=20, out="runs/x")
    >>> biodl.load(run).predict("new_images/")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "train": "api",
    "run_study": "api",
    "load": "inference.predictor",
    "Predictor": "inference.predictor",
    "Run": "tasks.common",
    "load_config": "config",
    "seed_everything": "repro",
    "BiodlError": "errors",
    "Trainer": "engine",
    "create_model": "models",
    "list_models": "models",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'biodl' has no attribute {name!r}")
