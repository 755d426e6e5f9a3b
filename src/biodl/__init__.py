"""biodl: reproducible deep learning for the health and life sciences.

The public API is small: seeding (``seed_everything``), config (``load_config``;
``RunConfig``, the type of any task's config), models (``create_model``, ``list_models``), the engine
(``Trainer``), reports (``build_report``), explanations (``explain_run``) and the error
every user fault raises (``BiodlError``).
Names load on first use, so ``import biodl`` (and ``biodl --version``) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "config",
    "load_config": "config",
    "Trainer": "engine",
    "BiodlError": "errors",
    "create_model": "models",
    "list_models": "models",
    "seed_everything": "repro",
    "build_report": "report.run_report",
    "explain_run": "interpret.explain",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'biodl' has no attribute {name!r}")
