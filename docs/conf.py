"""Sphinx configuration of biodl's documentation (``make docs``: the references are generated
from the code by ``docs/gen_reference.py``, then ``sphinx-build -W`` builds ``site/``).

Sphinx with MyST rather than MkDocs: Sphinx is maintained for the long run (MkDocs 1.x is not, and
Material for MkDocs announces its end of life for May 2027), autodoc imports the real objects
(biodl's lazily exported names included), and MyST-NB can execute and render notebooks in the
same build."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "biodl"
author = "the biodl developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "gen_reference.py", "conf.py"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = "biodl"
html_static_path: list[str] = []
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True

