"""Commands that need no model answer without importing torch (a CUDA build takes seconds to
import): the listing of studies, --help, and the one-line errors of a bad config, a missing
file and a missing run. Each runs in a fresh interpreter, which then reports what it imported."""

import subprocess
import sys

import pytest

PROBE = """
import sys
sys.argv = ["biodl", *sys.argv[1:]]
from biodl.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("EXIT", code, "TORCH", "torch" in sys.modules, "TORCHMETRICS", "torchmetrics" in sys.modules)
"""


def _probe(*args: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    return done.stdout, done.stderr


@pytest.mark.parametrize("args, code, says", [
    (["studies"], 0, "tf-binding"),
    (["train", "--help"], 0, "--config"),
    (["wsi", "tile", "--help"], 0, "--tile-mpp"),
    (["train", "--config", "{bad}"], 2, "unknown key 'data.targt'; did you mean 'data.target'"),
    (["train", "--data", "{missing}"], 2, "no such file or folder"),
    (["predict", "{missing}", "x.csv"], 2, "no such run directory"),
    (["evaluate", "{tmp}"], 2, "not a run directory"),
    (["run", "nosuch"], 2, "no such study"),
])
def test_a_command_that_needs_no_model_imports_no_torch(args, code, says, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: tabular\ndata:\n  dataset: heart-failure\n  targt: DEATH_EVENT\n")
    args = [a.format(bad=bad, missing=tmp_path / "none", tmp=tmp_path) for a in args]
    out, err = _probe(*args)
    assert f"EXIT {code} TORCH False TORCHMETRICS False" in out, (out, err)
    assert says in out + err


def test_the_listing_of_studies_matches_the_study_modules():
    """The registry describes each study without importing it; every entry names a real module."""
    from biodl.studies import get_study, list_studies

    for name in list_studies():
        assert get_study(name).NAME == name
