"""Generate the documentation's reference pages from the code, so they cannot drift from it:

- ``reference/config.md``: every key of every task's config (the pydantic models): dotted name,
  type, default, description;
- ``reference/cli.md``: every command of the ``biodl`` typer app, its arguments and options;
- ``reference/api.md``: the public names of ``biodl`` (``biodl.__all__``), rendered from their
  docstrings by Sphinx's autodoc.

    python docs/gen_reference.py [OUT_DIR]     # default: docs/reference (not committed)
"""

from __future__ import annotations

import inspect
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

HERE = Path(__file__).resolve().parent


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None")
    return text.replace("|", "\\|")


def _nested(annotation: Any) -> type[BaseModel] | None:
    """The config section a field holds (its type, or the model inside ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{value!r}`" if value not in ("", None) else ("`None`" if value is None else "`''`")


def config_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) of every field of ``model``, sections unfolded."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        rows.append((key, _type(field.annotation), _default(field), (field.description or "").replace("|", "\\|")))
        section = _nested(field.annotation)
        if section is not None:
            rows += config_fields(section, f"{key}.")
    return rows


def config_reference() -> str:
    from biodl.config import RUN_CONFIGS

    out = ["# Config reference", "",
           "Generated from the config models (`biodl.config`); every key is also a `--set key=value`. A config "
           "YAML's `task:` picks the table.", ""]
    for task, model in RUN_CONFIGS.items():
        out += [f"## task: {task}", "", (inspect.getdoc(model) or "").split("\n\n")[0], "",
                "| key | type | default | description |", "|---|---|---|---|"]
        out += [f"| `{k}` | {t} | {d} | {text} |" for k, t, d, text in config_fields(model)]
        out.append("")
    return "\n".join(out)


def cli_commands() -> dict[str, Any]:
    """Command path (e.g. ``wsi view``) -> its click command, every command of the app."""
    import typer.main

    from biodl.cli import app

    found: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            full = f"{path} {name}".strip()
            if getattr(sub, "commands", None):
                walk(sub, full)
            else:
                found[full] = sub

    walk(typer.main.get_command(app), "")
    return found


def cli_reference() -> str:
    out = ["# Command-line reference", "", "Generated from the `biodl` command (its typer app); `biodl COMMAND --help` "
           "prints the same.", ""]
    for path, cmd in cli_commands().items():
        out += [f"## biodl {path}", "", (cmd.help or "").strip().split("\n\n")[0], "",
                "| argument / option | help | default |", "|---|---|---|"]
        for p in cmd.params:
            if p.name == "help":
                continue
            names = ", ".join(f"`{o}`" for o in getattr(p, "opts", [])) if p.param_type_name == "option" \
                else f"`{p.name.upper()}`"
            default = "" if p.required or p.default in (None, False) else f"`{p.default}`"
            help_text = (getattr(p, "help", "") or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| {names} | {help_text} | {'required' if p.required else default} |")
        out.append("")
    return "\n".join(out)


def api_names() -> list[str]:
    import biodl

    return [n for n in biodl.__all__ if n != "__version__"]


def api_reference() -> str:
    import biodl

    out = ["# Python API", "", (biodl.__doc__ or "").split("\n\n")[1].replace("``", "`"), ""]
    for name in api_names():
        target = f"biodl.{biodl._EXPORTS[name]}.{name}"
        kind = "autoclass" if inspect.isclass(getattr(biodl, name)) else "autofunction"
        out += [f"## biodl.{name}", "", "```{eval-rst}", f".. {kind}:: {target}",
                *(["   :members:"] if kind == "autoclass" else []), "```", ""]
    return "\n".join(out)


def main(out_dir: Path = HERE / "reference") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("config.md", config_reference()), ("cli.md", cli_reference()), ("api.md", api_reference())):
        (out_dir / name).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "reference")
