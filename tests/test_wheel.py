"""The built wheel works outside the source tree: installed into a fresh venv, run from an
unrelated folder, its studies give the numbers a run from the checkout gives."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
HF = ["--set", "n_splits=3", "--set", "n_boot=200", "--set", "progress=false"]
DR = ["--set", "trainer.epochs=1", "--set", "trainer.progress=false", "--set", "n_boot=200"]


def _tree(dest: Path) -> Path:
    """The working tree's files (tracked, and untracked but not ignored) copied to ``dest``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _comparable(run_dir: Path) -> dict:
    """metrics.json without wall-clock entries."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if "seconds" not in k and not k.startswith("time/")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh venv's python, an empty working folder). The venv sees the test environment's
    third-party packages through a .pth line (no torch copy), but not its editable biodl: a .pth
    file inside a folder added that way is not run, so the only biodl is the wheel's."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the working tree's files")
    tmp = tmp_path_factory.mktemp("wheel")
    src = _tree(tmp / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist")], check=True, capture_output=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("biodl-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True)
    shutil.rmtree(src)  # no source tree left to fall back on
    work = tmp / "work"
    work.mkdir()
    return python, work


def _biodl(python: Path, work: Path, *args) -> subprocess.CompletedProcess:
    """``python -m biodl ARGS`` in ``work``, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), "-m", "biodl", *map(str, args)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_the_wheel_runs_the_studies_outside_the_checkout(installed, tmp_path):
    python, work = installed
    where = subprocess.run([str(python), "-c", "import biodl; print(biodl.__file__)"], cwd=work, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert where.startswith(str(python.parent.parent)) and str(ROOT) not in where
    r = _biodl(python, work, "studies")
    assert r.returncode == 0 and "heart-failure" in r.stdout and "tcga-melanoma" in r.stdout
    for study, args in (("heart-failure", HF), ("retinopathy", DR)):
        r = _biodl(python, work, "run", study, "--out", work / study, *args)
        assert r.returncode == 0, r.stderr[-2000:]
        # the checkout's run in a fresh process too: an in-process run would inherit this test process's torch
        # state (thread count, flags set by earlier tests), and CPU float reductions depend on the thread count
        r = _biodl(Path(sys.executable), tmp_path, "run", study, "--out", tmp_path / study, *args)
        assert r.returncode == 0, r.stderr[-2000:]
        ours, theirs = _comparable(work / study), _comparable(tmp_path / study)
        assert ours.keys() == theirs.keys() and len(ours) > 10
        assert ours == theirs, {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
    r = _biodl(python, work, "run", "heart-failure", "--data", work / "missing.csv")
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
