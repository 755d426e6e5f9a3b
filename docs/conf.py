"""Sphinx configuration of biodl's documentation (``make docs``: the references are generated
from the code by ``docs/gen_reference.py``, then ``sphinx-build -W`` builds ``site/``).

Sphinx with MyST rather than MkDocs: Sphinx is maintained for the long run (MkDocs 1.x is not, and
Material for MkDocs announces its end of life for May 2027), autodoc imports the real objects
(biodl's lazily exported names included), and MyST-NB can execute and render notebooks in the
same build."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "biodl"
author = "the biodl developers"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]  # myst_nb: MyST Markdown and notebooks
exclude_patterns = ["_build", "gen_reference.py", "conf.py"]
# the tutorials are stored without outputs; the build runs them once and keeps their outputs in a cache
# (BIODL_DOCS_EXECUTE=off: render them unexecuted, as the strict-build test does; the suite runs them itself)
nb_execution_mode = os.environ.get("BIODL_DOCS_EXECUTE", "cache")
nb_execution_cache_path = str(Path(__file__).resolve().parent / "_build" / "jupyter_cache")
nb_execution_timeout = 300
nb_execution_raise_on_error = True
myst_heading_anchors = 3
html_theme = "furo"
html_title = "biodl"
html_show_search_summary = False  # summaries are fetched, and a site opened from disk may not fetch
html_static_path: list[str] = []
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True

