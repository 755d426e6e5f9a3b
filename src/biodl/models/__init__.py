"""Models: one family per module, registered by name, built by :func:`create_model` (in the
manner of timm's ``create_model``, which checks the arguments against the constructor's
signature so that a misspelt argument is an error)."""

from __future__ import annotations

from . import cnn, mil, sequence, tabular, unet  # noqa: F401  (register every family)
from ._registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
