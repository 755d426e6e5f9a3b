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
pytest.importorskip("myst_nb")


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


def test_every_study_has_a_page_of_the_same_shape():
    """Run it, data and licence, method, results beside the published (a table), own data."""
    from biodl.studies import list_studies

    import re

    pages = {p.stem: p.read_text() for p in (ROOT / "docs" / "studies").glob("*.md")}
    runs = {stem: set(re.findall(r"biodl run ([\w-]+)", text)) for stem, text in pages.items()}
    sections = ["## Run it", "## Data and licence", "## Method", "## Results beside the published",
                "## Your own data"]
    for name in list_studies():
        assert any(name in found for found in runs.values()), name  # heart-failure-mlp: on heart-failure's page
    for stem, text in pages.items():
        assert f"biodl run {stem} " in text.split("## Run it")[1].split("\n## ")[0], stem
        at = [text.find(h + "\n") for h in sections]
        assert -1 not in at and at == sorted(at), (stem, at)
        results = text.split("## Results beside the published\n")[1].split("\n## ")[0]
        assert "|---" in results and "SOURCE.md" in text, stem


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from a copy of docs/ with freshly generated references, warnings as errors
    (the tutorials rendered unexecuted: the test below runs them)."""
    import os

    tmp = tmp_path_factory.mktemp("docs")
    docs = tmp / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("reference", "__pycache__", "_build"))
    _generator().main(docs / "reference")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(docs),
                           str(tmp / "site")], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "BIODL_DOCS_EXECUTE": "off"})
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "site"


def test_the_site_builds_strictly(site):
    for page in ("index.html", "getting-started.html", "reference/cli.html", "reference/config.html",
                 "reference/api.html", "search.html", "studies/histopathology-mil.html",
                 "tutorials/01-supervised-loop.html"):
        assert (site / page).is_file(), page
    api = (site / "reference" / "api.html").read_text()
    assert api.count('class="sig-name descname"') >= 11  # every public name rendered from its docstring
    assert "fonts.googleapis" not in (site / "index.html").read_text()


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "docs" / "tutorials").glob("*.ipynb")))
def test_each_tutorial_runs_on_the_venvs_kernel(notebook, tutorial):
    """Each tutorial executes without an error and shows what its text promises (the study tests
    read the runs these executions make: see the ``tutorial`` fixture)."""
    nbformat = pytest.importorskip("nbformat")
    stored = nbformat.read(ROOT / "docs" / "tutorials" / notebook, as_version=4)
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code")  # stored without outputs
    text = tutorial(notebook).text
    assert "Error" not in text and "Traceback" not in text
    expected = {"01-supervised-loop.ipynb": ["test/mcc", "trained"],
                "02-chicco-jurman.ipynb": ["Random forests", "table4_comparison.csv"],
                "03-retinopathy.ipynb": ["test/qwk", "coverage", "entropy"],
                "04-histopathology.ipynb": ["CIs over 10 patients", "test/f1", "000_gradcam.png"],
                "05-whole-slides.ipynb": ["10 tiles of 224 px", "'tiles': 17", "tiles.geojson"],
                "06-tcga-melanoma.ipynb": ["468 samples", "ARI hierarchical", "CXCL"],
                "07-tf-binding.ipynb": ["test/roc_auc", "k-mer spectrum", "p_1"],
                "08-cell-lines.ipynb": ["CIs over 3 plates", "5-fold CV", "linear SVM"]}
    assert all(word in text for word in expected[notebook]), text[-2000:]


def test_the_site_opens_offline_and_its_search_finds_a_page(site):
    pytest.importorskip("playwright", reason="pip install 'biodl[browser]'")
    from playwright.sync_api import sync_playwright

    from biodl.errors import BiodlError
    from biodl.report.browser import FLAGS, chromium_path

    try:
        chromium = chromium_path()
    except BiodlError as exc:
        pytest.skip(str(exc))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        page = browser.new_page()
        console, outside = [], []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        for name, words in (("index.html", "patient-level validation"), ("studies/histopathology-mil.html", "467 bags"),
                            ("tutorials/01-supervised-loop.html", "biodl.Trainer")):
            page.goto((site / name).as_uri(), wait_until="load")
            assert words in page.inner_text("body"), name
        page.goto((site / "search.html").as_uri() + "?q=Chicco", wait_until="load")
        page.wait_for_selector("#search-results li", timeout=15000)
        hits = page.eval_on_selector_all("#search-results li a", "els => els.map(e => e.getAttribute('href'))")
        browser.close()
    assert any("02-chicco-jurman" in h or "heart-failure" in h for h in hits), hits
    assert console == [] and outside == []


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
