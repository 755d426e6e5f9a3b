"""Shared fixtures: the CLI called in-process, a trained run, CSV helpers; how the suite shares
the CPU among pytest-xdist workers (``make test`` runs ``pytest -n auto``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from biodl.cli import main
from biodl.datasets import embedded_path

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Each worker (and every process it starts: `python -m biodl`, torchrun, a notebook kernel) takes
    # its share of the cores instead of all of them, set before torch is imported; so a test's
    # in-process reference and its subprocess compute with the same number of threads.
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

ROOT = Path(__file__).resolve().parents[1]
HEART = embedded_path("heart-failure")
FAST = ["--set", "trainer.epochs=4", "--set", "trainer.progress=false"]


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys):
    """Run ``biodl ARGS`` in this process; returns exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def main_ok(*args) -> None:
    """``biodl ARGS`` in this process for a fixture's run; it must succeed."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr starting with 'error:', containing each fragment."""
    assert result.code == 2, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A short heart-failure MLP run shared by the evaluate/predict tests (read only!)."""
    out = tmp_path_factory.mktemp("shared") / "run"
    try:
        main(["train", "--config", str(ROOT / "examples/heart_failure_mlp.yaml"), "--out", str(out), *FAST])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the trained run that a test may damage."""
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst


def heart_rows() -> list[str]:
    return HEART.read_text().splitlines()


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def edit_cell(path: Path, line: int, column: str, value: str) -> Path:
    """Write a copy of the embedded heart-failure CSV to ``path`` with one cell replaced
    (``line``: file line number, the header being line 1)."""
    lines = heart_rows()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    return write_csv(path, lines)


def train_square_run(tmp: Path, names: tuple[str, str], epochs: int = 3) -> Path:
    """``tmp/run``: a short small-ResNet run on 60 generated 16 px images in two class folders
    (``names[1]``'s images have a bright square in the top-left corner)."""
    import numpy as np
    import yaml
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(60):
        img = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
        if i % 2:
            img[2:7, 2:7] = 250
        d = tmp / "data" / names[i % 2]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    cfg = {"name": "img", "task": "image", "data": {"path": str(tmp / "data"), "cache_dir": str(tmp / "cache")},
           "model": {"name": "resnet_small"}, "optimizer": {"lr": 0.01}}
    (tmp / "run.yaml").write_text(yaml.safe_dump(cfg))
    try:
        main(["train", "--config", str(tmp / "run.yaml"), "--out", str(tmp / "run"),
              "--set", f"trainer.epochs={epochs}", "--set", "trainer.progress=false", "--set", "n_boot=100",
              "--set", "data.batch_size=16", "--set", "model.args={width: 8, blocks: 1}"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return tmp / "run"


#: the four smallest embedded IDC patients: a patient tree small enough for MIL tests
IDC_PATIENTS = ("8916", "9035", "9124", "9022")


@pytest.fixture(scope="session")
def idc_tree(tmp_path_factory) -> Path:
    """A copy of four IDC patients' patch folders (read only!)."""
    root = tmp_path_factory.mktemp("idc") / "tree"
    for p in IDC_PATIENTS:
        shutil.copytree(embedded_path("idc") / p, root / p)
    return root


@pytest.fixture(scope="session")
def idc_patches(idc_tree) -> Path:
    """A 2-fold patch model of :func:`idc_tree`'s patients (1 epoch, 24 px): an extractor (read only!)."""
    import yaml

    cfg = {"name": "patches", "task": "image", "data": {"path": str(idc_tree), "split": "kfold", "folds": 2,
           "size": 24, "fit": "pad", "classes": ["no IDC", "IDC"], "cache_dir": str(idc_tree.parent / "cache"),
                    "mpp": 4.0},
           "model": {"name": "resnet_small", "args": {"width": 8, "blocks": 1}}, "trainer": {"epochs": 1}}
    (idc_tree.parent / "patches.yaml").write_text(yaml.safe_dump(cfg))
    main_ok("train", "--config", idc_tree.parent / "patches.yaml", "--out", idc_tree.parent / "patches",
            "--set", "trainer.progress=false", "--set", "n_boot=100")
    return idc_tree.parent / "patches"


class Tutorial:
    """An executed docs tutorial: ``book`` (the notebook with its outputs) and ``tmp`` (the
    temporary folder, ``$TMPDIR`` of its kernel, where its runs stay; ``tmp/cache`` its
    ``$BIODL_CACHE``, empty when it started)."""

    def __init__(self, book, tmp: Path) -> None:
        self.book, self.tmp = book, tmp

    @property
    def text(self) -> str:
        """Every code cell's printed and displayed text, joined."""
        return "\n".join(str(o.get("text") or (o.get("data") or {}).get("text/plain") or "")
                         for c in self.book.cells if c.cell_type == "code" for o in c.outputs)

    @property
    def stderr(self) -> str:
        """What its code cells printed on stderr (warnings), joined."""
        return "".join(o.get("text", "") for c in self.book.cells if c.cell_type == "code" for o in c.outputs
                       if o.get("output_type") == "stream" and o.get("name") == "stderr")

    @property
    def cache(self) -> Path:
        """Its ``$BIODL_CACHE``."""
        return self.tmp / "cache"

    def run(self, name: str) -> Path:
        """The one run folder called ``name`` that the tutorial wrote (``tempfile.mkdtemp()/name``)."""
        found = sorted(self.tmp.glob(f"*/{name}"))
        assert len(found) == 1, (name, found)
        return found[0]


#: the test modules that read a tutorial's runs (``tutorial(NOTEBOOK)``), by the tutorial's notebook
TUTORIAL_READERS = {"02-chicco-jurman.ipynb": "tests/studies/test_heart_failure.py",
                    "04-histopathology.ipynb": "tests/tasks/test_image.py",
                    "07-tf-binding.ipynb": "tests/studies/test_tf_binding.py",
                    "08-cell-lines.ipynb": "tests/studies/test_cell_lines.py"}


#: test modules of few tests that keep one worker busy for 20 s or more (a wheel built and
#: installed, torchrun jobs, a study): started first, so that none is left to run alone at the end
LONG_UNITS = ("tests/test_wheel.py", "tests/engine/test_ddp.py", "tests/studies/test_histopathology_mil.py")


def xdist_scope(nodeid: str) -> str:
    """The unit an xdist worker takes whole: a test module (its module fixtures built once), but
    each tutorial apart, with the modules that read its runs (the notebook executed once)."""
    module, _, name = nodeid.partition("::")
    if module == "tests/test_docs.py" and name.startswith("test_each_tutorial_runs_on_the_venvs_kernel["):
        return name[name.index("[") + 1:-1]
    return next((book for book, reader in TUTORIAL_READERS.items() if reader == module), module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``pytest -n N``: workers take :func:`xdist_scope` units, the tutorials and
    :data:`LONG_UNITS` first, then those with the most tests (``--dist loadfile`` with the
    tutorials apart and the long units put first, so that none is left to run alone at the end;
    ``xdist_group`` marks no longer reach the scheduler under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class TutorialScopes(LoadScopeScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not self.ordered:
                def order(unit):  # the long units first, then those with the most tests
                    scope, tests = unit
                    return not (scope.endswith(".ipynb") or scope in LONG_UNITS), -len(tests)

                units = sorted(self.workqueue.items(), key=order)
                self.workqueue.clear()
                self.workqueue.update(units)
                self.ordered = True
            super()._assign_work_unit(node)

    return TutorialScopes(config, log)


def pytest_collection_modifyitems(items) -> None:
    """A test module that reads a tutorial's runs must be in :data:`TUTORIAL_READERS` (else two
    workers would each execute the notebook)."""
    for item in items:
        module = item.nodeid.partition("::")[0]
        if "tutorial" in getattr(item, "fixturenames", ()) and module != "tests/test_docs.py" and \
                module not in TUTORIAL_READERS.values():
            raise pytest.UsageError(f"{module} reads a tutorial: add it to TUTORIAL_READERS in tests/conftest.py")


@pytest.fixture(scope="session")
def tutorial(tmp_path_factory):
    """``tutorial(NOTEBOOK)`` -> :class:`Tutorial`: ``docs/tutorials/NOTEBOOK`` executed once per
    session on the venv's kernel (nbclient, 300 s a cell). A tutorial runs a study as a reader
    would; the study's tests read that run instead of training the same study a second time."""
    done: dict[str, Tutorial | BaseException] = {}

    def execute(notebook: str) -> Tutorial:
        if notebook not in done:
            import nbclient
            import nbformat

            book = nbformat.read(ROOT / "docs" / "tutorials" / notebook, as_version=4)
            tmp = tmp_path_factory.mktemp(notebook.split(".")[0])
            try:
                with pytest.MonkeyPatch.context() as mp:
                    mp.setenv("TMPDIR", str(tmp))
                    mp.setenv("BIODL_CACHE", str(tmp / "cache"))
                    nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                            resources={"metadata": {"path": str(tmp)}}).execute()
                done[notebook] = Tutorial(book, tmp)
            except Exception as exc:  # every test that needs this tutorial fails with its error
                done[notebook] = exc
        if isinstance(done[notebook], BaseException):
            raise done[notebook]
        return done[notebook]

    return execute
