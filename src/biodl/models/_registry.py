"""The model registry: name -> constructor, and the factory that checks arguments (a leaf module,
like timm's ``_registry.py``: the model families import it, it imports none of them)."""

from __future__ import annotations

import difflib
import inspect
import warnings
from typing import Any, Callable

from torch import nn

from ..errors import ConfigError

__all__ = ["register_model", "list_models", "check_args", "create_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model constructor under its function name. A second constructor
    of the same name replaces the first, with a warning (a plug-in shadowing a built-in)."""
    if fn.__name__ in _REGISTRY and _REGISTRY[fn.__name__] is not fn:
        warnings.warn(f"model '{fn.__name__}' registered again ({fn.__module__}); the new one replaces the old",
                      stacklevel=2)
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def check_args(name: str, kwargs: dict[str, Any]) -> None:
    """A ConfigError for any argument the registered model ``name``'s constructor does not take
    (naming the closest valid one)."""
    params = inspect.signature(_REGISTRY[name]).parameters
    for key in kwargs:
        if key not in params:
            valid = list(params)
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"model.args.{key}", f"'{name}' takes no argument '{key}'; {hint}valid: {', '.join(valid)}"
            )


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with the constructor's keyword arguments.

    Args:
        name: a name from :func:`list_models`, e.g. ``dbrnet``, ``resnet18``, ``unet``, ``mlp``.
        **kwargs: the constructor's arguments (``model.args`` in a config), e.g.
            ``num_classes``, ``in_chans``, ``width``.

    Returns:
        The ``nn.Module``; image classifiers take (B, C, H, W) floats and give (B, num_classes)
        logits, and expose ``features`` and ``head``.

    Raises:
        ConfigError: an unknown name or argument (naming the closest valid one), or an argument
            the constructor rejects.

    Example:
        >>> model = create_model("dbrnet", num_classes=5, in_chans=3)
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list_models(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError("model.name", f"unknown model '{name}'; {hint}available: {', '.join(list_models())}")
    fn = _REGISTRY[name]
    check_args(name, kwargs)
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError("model.args", f"{name}: {exc}") from None
