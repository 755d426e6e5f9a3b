"""Reading configs: YAML files (safely and boundedly), ``--set key=value`` overrides, validation
with one-line errors that name the key and suggest the closest valid one, and the canonical
form a run saves and hashes."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, describe_os_error, path_problem
from .registry import RunConfig, config_class

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "validation_problem", "apply_overrides", "MAX_YAML_NODES", "safe_yaml", "read_yaml", "build_config", "load_config",
    "config_dict", "dump_config", "config_hash",
]


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _check_keys(raw: Any, model: type[BaseModel], where: str, prefix: str = "") -> None:
    """Raise ConfigError for the first key of ``raw`` that ``model`` does not have."""
    if not isinstance(raw, dict):
        return
    fields = model.model_fields
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in fields:
            valid = sorted(fields)
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
            raise ConfigError(where, f"unknown key '{path}'; {hint}valid keys here: {', '.join(valid)}")
        sub = _nested_model(fields[key].annotation)
        if sub is not None:
            _check_keys(value, sub, where, prefix=f"{path}.")


def validation_problem(exc: ValidationError) -> str:
    """The first fault of a pydantic error as ``key.path: message (got value)``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")  # a validator's own words need no prefix
    if err["type"] == "value_error":
        return f"{loc}: {msg}" if loc else msg
    if "input" in err and err["type"] != "missing" and not isinstance(err["input"], (dict, list)):
        got = repr(err["input"])
        msg += f" (got {got[:60] + '...' if len(got) > 60 else got})"
    elif isinstance(err.get("input"), list) and err["type"] != "missing":
        msg += " (got a list)"
    return f"{loc}: {msg}" if loc else msg


def _validate(raw: dict[str, Any], where: str, model: type[M]) -> M:
    _check_keys(raw, model, where)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(where, validation_problem(exc)) from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item}", "expected KEY=VALUE, e.g. trainer.epochs=5")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item}", "empty key")
    try:
        value = safe_yaml(text, f"--set {item}") if text.strip() else None
    except ConfigError as exc:
        if not isinstance(exc.__cause__, yaml.YAMLError):
            raise
        value = text  # not YAML: the text itself
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str], model: type[BaseModel]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested dict (values parsed as YAML)."""
    for item in overrides:
        parts, value = _parse_override(item)
        _check_keys(_nest(parts, value), model, f"--set {item}")
        node = raw
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return raw


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return out


#: most YAML nodes a config may expand to through aliases (``*a``) before it is refused
MAX_YAML_NODES = 100_000


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (counted, not expanded)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a node that refers to itself counts once (yaml refuses such loops anyway)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = total = min(total, MAX_YAML_NODES + 1)
    return total


def safe_yaml(text: str, where: str | Path) -> Any:
    """Parse YAML safely (plain data only) and boundedly: a document whose aliases would expand to
    more than :data:`MAX_YAML_NODES` nodes (an "alias bomb") or that nests too deeply is refused
    before anything is built. Every fault is one ConfigError naming ``where``."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(where, f"invalid YAML{at}: {problem}") from exc
        except RecursionError:
            raise ConfigError(where, "invalid YAML: nested too deeply") from None
        if node is None:
            return None
        try:
            if _expanded_size(node, {}) > MAX_YAML_NODES:
                raise ConfigError(where, f"YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias "
                                         "bomb?); write the values out or use fewer aliases")
            return loader.construct_document(node)
        except RecursionError:
            raise ConfigError(where, "invalid YAML: nested too deeply") from None
        except yaml.YAMLError as exc:
            raise ConfigError(where, f"invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every fault into a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, path_problem(path) or "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, "is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "not a UTF-8 text file (binary file?)") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {describe_os_error(exc)}") from None
    raw = safe_yaml(text, path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw


def _task_model(raw: dict[str, Any], overrides: list[str], where: str) -> type[BaseModel]:
    task = raw.get("task", "tabular")
    for item in overrides:
        if item.partition("=")[0].strip() == "task":
            task = _parse_override(item)[1]
    return config_class(task, where)


def build_config(raw: dict[str, Any], overrides: list[str] | None = None, where: str = "config",
                 model: type[M] | None = None) -> M:
    """Validate a raw mapping (plus overrides) into ``model`` (default: the config class of the
    mapping's ``task``, a :class:`TabularRunConfig` for tabular runs)."""
    raw = json.loads(json.dumps(raw, default=str))  # deep copy, plain types
    model = model or _task_model(raw, list(overrides or []), where)
    _check_keys(raw, model, where)
    apply_overrides(raw, list(overrides or []), model)
    return _validate(raw, where, model)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config file and apply ``--set`` style overrides."""
    return build_config(read_yaml(path), overrides, where=str(path))


def config_dict(config: BaseModel) -> dict[str, Any]:
    return config.model_dump(mode="json")


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML text (every default written out)."""
    return yaml.safe_dump(config_dict(config), sort_keys=False)


def config_hash(config: BaseModel) -> str:
    """sha256 of the resolved config, canonical JSON; checkpoints record it."""
    blob = json.dumps(config_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
