"""The search space of ``biodl tune`` (#33): the ``search:`` block of a config YAML, keyed by the
dotted names ``--set`` takes, each a range or a list of choices:

.. code-block:: yaml

    search:
      optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}
      optimizer.weight_decay: {uniform: [0.0, 0.1]}
      model.args.dropout: {uniform: [0.0, 0.5]}
      model.args.hidden: {choice: [[32, 16], [64, 32], [128, 64]]}
      data.batch_size: {int: [8, 64], step: 8}

Every key and range is checked before any trial runs: the key must exist in the run's config
(``model.args.*``: the model's constructor must take it), ``low < high``, a log range above zero,
and the config built with each end of the range (or each choice) must be valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..config import build_config
from ..errors import ConfigError
from ..models._registry import check_args

__all__ = ["KINDS", "Param", "parse_space", "overrides_of"]

#: the kinds of a search entry and what each holds
KINDS = {"uniform": "[low, high] floats", "log_uniform": "[low, high] floats above 0, sampled on a log scale",
         "int": "[low, high] integers (optional step)", "log_int": "[low, high] integers above 0, on a log scale",
         "choice": "a list of values (numbers, text, lists)"}


@dataclass(frozen=True)
class Param:
    """One searched setting: its dotted ``key``, ``kind`` (see :data:`KINDS`) and range or choices."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value (an Optuna trial's ``suggest_*``)."""
        if self.kind == "choice":  # Optuna's choices are scalars: lists travel as JSON text
            return json.loads(trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices]))
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.step or 1,
                                     log=self.kind == "log_int")
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log_uniform")

    def ends(self) -> list[Any]:
        """Values that span the entry (its range's ends, or every choice)."""
        if self.kind == "choice":
            return list(self.choices)
        cast = int if self.kind in ("int", "log_int") else float
        return [cast(self.low), cast(self.high)]


def _param(key: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict) or not (set(spec) - {"step"}) or len(set(spec) - {"step"}) != 1:
        raise ConfigError(where, f"search: {key}: give one of {', '.join(KINDS)} (e.g. {{log_uniform: [1e-4, 1e-2]}})")
    kind = next(k for k in spec if k != "step")
    if kind not in KINDS:
        raise ConfigError(where, f"search: {key}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    value, step = spec[kind], spec.get("step")
    if step is not None and (kind != "int" or not isinstance(step, int) or step < 1):
        raise ConfigError(where, f"search: {key}: step is a whole number >= 1, for int ranges only")
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise ConfigError(where, f"search: {key}: choice takes a non-empty list of values")
        return Param(key, kind, choices=tuple(value))
    numbers = isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not numbers:
        raise ConfigError(where, f"search: {key}: {kind} takes {KINDS[kind]}")
    low, high = value
    if kind in ("int", "log_int") and not all(float(v).is_integer() for v in value):
        raise ConfigError(where, f"search: {key}: {kind} takes whole numbers, got {low} and {high}")
    if not low < high:
        raise ConfigError(where, f"search: {key}: the range needs low < high, got [{low}, {high}]")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(where, f"search: {key}: a log range must stay above 0, got [{low}, {high}]")
    return Param(key, kind, float(low), float(high), step)


def overrides_of(values: dict[str, Any]) -> list[str]:
    """``--set`` strings of searched values (JSON is YAML, so lists and text survive)."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def parse_space(search: Any, raw: dict[str, Any], where: str) -> list[Param]:
    """The checked search space of ``search`` (the YAML block) over the config ``raw``; any fault is
    one ConfigError naming ``where`` and the entry."""
    if not isinstance(search, dict) or not search:
        raise ConfigError(where, "search: a mapping of settings to ranges, e.g. optimizer.lr: {log_uniform: [1e-4, "
                                 "1e-2]}")
    space = [_param(str(k), v, where) for k, v in search.items()]
    for p in space:
        for value in p.ends():
            try:
                config: BaseModel = build_config(json.loads(json.dumps(raw)), overrides_of({p.key: value}), where)
            except ConfigError as exc:
                raise ConfigError(where, f"search: {p.key}: {exc.problem}") from None
            if p.key.startswith("model.args."):
                try:
                    check_args(config.model.name, {p.key.split(".", 2)[2]: value})
                except ConfigError as exc:
                    raise ConfigError(where, f"search: {p.key}: {exc.problem}") from None
    return space
