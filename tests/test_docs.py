"""The documentation site: the references are generated from the code and cover it (every
command, every config key, every public name), and the whole site builds with warnings as
errors (a broken link, a missing reference or a docstring Sphinx cannot render fails)."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_references_cover_every_command_key_and_public_name():
    from biodl.config import RUN_CONFIGS

    gen = _generator()
    cli, config, api = gen.cli_reference(), gen.config_reference(), gen.api_reference()
    commands = gen.cli_commands()
    assert {"train", "tune", "run", "wsi view", "wsi features", "evaluate", "predict"} <= set(commands)
    assert all(f"## biodl {c}\n" in cli for c in commands)
    for name, cmd in commands.items():  # every option of every command
        for p in cmd.params:
            if p.name != "help" and p.param_type_name == "option":
                assert f"`{p.opts[0]}`" in cli.split(f"## biodl {name}\n")[1].split("\n## ")[0], (name, p.opts)
    for task, model in RUN_CONFIGS.items():
        section = config.split(f"## task: {task}\n")[1].split("\n## ")[0]
        keys = [k for k, *_ in gen.config_fields(model)]
        assert "data.path" in keys and "optimizer.lr" in keys and ("trial" in keys or task == "segmentation")
        assert all(f"| `{k}` |" in section for k in keys), task
    assert len(RUN_CONFIGS) == config.count("## task: ")
    import biodl

    assert all(f"## biodl.{n}\n" in api for n in biodl.__all__ if n != "__version__")


def test_the_site_builds_strictly(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("reference", "__pycache__"))
    _generator().main(docs / "reference")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(docs),
                           str(tmp_path / "site")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    for page in ("index.html", "getting-started.html", "reference/cli.html", "reference/config.html",
                 "reference/api.html", "search.html"):
        assert (tmp_path / "site" / page).is_file(), page
    api = (tmp_path / "site" / "reference" / "api.html").read_text()
    assert api.count('class="sig-name descname"') >= 11  # every public name rendered from its docstring
    assert "fonts.googleapis" not in (tmp_path / "site" / "index.html").read_text()


def test_the_readme_is_a_front_door_whose_links_all_lead_somewhere():
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert len(links) >= 20 and all((ROOT / link).exists() for link in links), [
        link for link in links if not (ROOT / link).exists()]
    pages = {p.relative_to(ROOT / "docs").with_suffix("").as_posix() for p in (ROOT / "docs").rglob("*.md")
             if "reference" not in p.parts}
    index = (ROOT / "docs" / "index.md").read_text()
    assert all(p in index for p in pages - {"index"}), sorted(p for p in pages if p not in index)  # all in the nav
