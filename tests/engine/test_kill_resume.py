"""A real `kill -9` at several points of a training run, then `--resume`: the final
weights must be bit-identical to an uninterrupted run (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.forked import biodl

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "train", "--config", str(ROOT / "examples/heart_failure_mlp.yaml"),
    "--set", "trainer.epochs=3", "--set", "trainer.checkpoint_every_steps=2",
    "--set", "trainer.early_stopping_patience=null", "--set", "trainer.progress=false",
]  # 179 training rows / batch 16 = 12 steps per epoch, 36 in all


def _biodl(out: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    """``biodl EXTRA --out OUT`` in a child process (forked from a warm server: tests/forked.py)."""
    env = dict(os.environ)
    if crash:
        env["BIODL_CRASH_AT"] = crash
    return biodl([*extra, "--out", str(out)], env=env, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    p = _biodl(out, *ARGS)
    assert p.returncode == 0, p.stderr
    return out


# step:K   killed right after optimiser step K (last checkpoint: step K-1 or K-2)
# pending / renamed: killed inside a checkpoint commit, before / after the safetensors rename
@pytest.mark.parametrize("crash", ["step:5", "step:12", "step:27", "pending:4", "renamed:9"])
def test_kill_then_resume_is_bit_identical(reference, tmp_path, crash):
    out = tmp_path / "run"
    killed = _biodl(out, *ARGS, crash=crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / "metrics.json").exists()  # the killed run never claims to be finished
    resumed = _biodl(out, "train", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    ref = load_file(reference / "checkpoints/last.safetensors")
    got = load_file(out / "checkpoints/last.safetensors")
    assert ref.keys() == got.keys()
    for k in ref:
        assert ref[k].equal(got[k]), k  # model, optimiser moments and step counts
    assert (out / "metrics.json").read_text() == (reference / "metrics.json").read_text()
    assert (out / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".") or "pending" in p.name]
    assert leftovers == []


def test_resume_of_a_finished_run_changes_nothing(reference, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = load_file(out / "checkpoints/last.safetensors")
    p = _biodl(out, "train", "--resume")
    assert p.returncode == 0, p.stderr
    after = load_file(out / "checkpoints/last.safetensors")
    assert all(before[k].equal(after[k]) for k in before)


def test_a_killed_study_run_resumes_with_run_resume(reference, tmp_path):
    """`biodl run STUDY --resume --out DIR` continues like `train --resume` (the study's config is
    the example's, so the result must equal the uninterrupted reference)."""
    out = tmp_path / "run"
    killed = _biodl(out, "run", "heart-failure-mlp", *ARGS[3:], crash="step:17")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = _biodl(out, "run", "heart-failure-mlp", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"results: {out}" in resumed.stdout
    ref, got = load_file(reference / "checkpoints/last.safetensors"), load_file(out / "checkpoints/last.safetensors")
    assert all(ref[k].equal(got[k]) for k in ref)
    assert (out / "metrics.json").read_text() == (reference / "metrics.json").read_text()


# what a cluster does on pre-emption or at the time limit: SIGTERM (or SIGUSR1), then SIGKILL
# after a grace period. step:K:TERM arrives right after optimiser step K; pending:K:TERM inside
# the K-th checkpoint commit (between its two renames), which must complete untouched.
@pytest.mark.parametrize("signal_at, stopped_at", [("step:7:TERM", 7), ("step:30:USR1", 30), ("pending:3:TERM", None)])
def test_sigterm_checkpoints_exits_143_and_resumes_bit_identically(reference, tmp_path, signal_at, stopped_at):
    out = tmp_path / "run"
    no_periodic = ["--set", "trainer.checkpoint_every_steps=0"]  # only epoch ends and the signal save state
    stopped = _biodl(out, *ARGS, *no_periodic, crash=signal_at)
    assert stopped.returncode == 143, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted: stopped by SIG") and "Traceback" not in stopped.stderr
    assert lines[-1].endswith(f"continue with: biodl train --resume --out {out}")
    assert not (out / "metrics.json").exists()
    last = json.loads((out / "checkpoints/last.json").read_text())
    assert not list((out / "checkpoints").glob("*pending*"))  # the commit a signal came into finished whole
    if stopped_at is not None:  # the state of the step the signal came after, not an older one
        assert last["step"] == stopped_at and last["sampler"]["batches_done"] == stopped_at % 12
    else:  # the third commit: best after epoch 1 (1st), last after epoch 1 (2nd), best after epoch 2 (3rd)
        assert last["step"] in (12, 24)
    resumed = _biodl(out, "train", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    ref = load_file(reference / "checkpoints/last.safetensors")
    got = load_file(out / "checkpoints/last.safetensors")
    for k in ref:
        assert ref[k].equal(got[k]), k
    assert (out / "metrics.json").read_text() == (reference / "metrics.json").read_text()
    assert (out / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
