"""Model registry and factory, in the manner of timm's ``create_model``.

Each family lives in its own module and registers its constructors with
:func:`register_model`. ``create_model(name, **kwargs)`` checks the arguments
against the constructor's signature so that a misspelt argument is an error.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from torch import nn

from ..errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model constructor under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model. Unknown names or arguments raise ConfigError with suggestions."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list_models(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError("model.name", f"unknown model '{name}'; {hint}available: {', '.join(list_models())}")
    fn = _REGISTRY[name]
    params = inspect.signature(fn).parameters
    for key in kwargs:
        if key not in params:
            valid = [p for p in params]
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"model.args.{key}", f"'{name}' takes no argument '{key}'; {hint}valid: {', '.join(valid)}"
            )
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError("model.args", f"{name}: {exc}") from None


from . import cnn, tabular, unet  # noqa: E402,F401  (register the image, tabular and U-Net families)

__all__ = ["create_model", "list_models", "register_model"]
