"""End-to-end tests of the command line, and its one-line errors for bad input."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from biodl.data import stratified_split
from tests.conftest import FAST, HEART, ROOT, assert_one_line_error, heart_rows, write_csv

EXAMPLE = ROOT / "examples/heart_failure_mlp.yaml"


def test_version_and_studies(cli):
    r = cli("--version")
    assert r.code == 0 and r.out.strip() == "biodl 0.1.0"
    r = cli("studies")
    names = [line.split()[0] for line in r.out.splitlines()]
    assert r.code == 0 and names == ["cell-lines", "heart-failure", "heart-failure-mlp", "histopathology",
                                     "histopathology-mil",
                                     "retinopathy", "tcga-melanoma", "tf-binding", "vessels"]


def test_train_writes_the_run_directory_layout(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"manifest.json", "config.yaml", "metrics.json", "metrics.csv", "tb", "checkpoints",
            "preprocess.json"} <= names
    assert {p.name for p in (trained_run / "checkpoints").iterdir()} == {
        "last.safetensors", "last.json", "best.safetensors", "best.json"}
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for key in ("test/mcc", "test/accuracy", "test/f1", "test/roc_auc", "test/pr_auc"):
        assert -1 <= metrics[key] <= 1
    assert metrics["epochs_trained"] == 4
    manifest = json.loads((trained_run / "manifest.json").read_text())
    assert manifest["split_sizes"] == {"train": 179, "val": 60, "test": 60}
    assert manifest["inputs"]["data"]["sha256"].startswith("9c73cea7")
    assert manifest["config"]["trainer"]["epochs"] == 4 and manifest["finished"]
    assert len((trained_run / "metrics.csv").read_text().splitlines()) == 1 + 4


def test_same_seed_same_metrics_other_seed_other_metrics(cli, tmp_path, trained_run):
    again = tmp_path / "again"
    assert cli("train", "--config", EXAMPLE, "--out", again, *FAST).code == 0
    first = (trained_run / "metrics.json").read_text()
    assert (again / "metrics.json").read_text() == first
    assert (again / "metrics.csv").read_text() == (trained_run / "metrics.csv").read_text()
    other = tmp_path / "other"
    assert cli("train", "--config", EXAMPLE, "--out", other, *FAST, "--set", "seed=1").code == 0
    assert json.loads((other / "metrics.json").read_text()) != json.loads(first)


def test_run_study_goes_through_the_same_path(cli, tmp_path, trained_run):
    r = cli("run", "heart-failure-mlp", "--out", tmp_path / "s", *FAST)
    assert r.code == 0 and f"results: {tmp_path / 's'}" in r.out
    assert (tmp_path / "s/metrics.json").read_text() == (trained_run / "metrics.json").read_text()


def test_evaluate_reproduces_the_test_metrics(cli, run_copy):
    r = cli("evaluate", run_copy)
    assert r.code == 0 and "results:" in r.out
    ev = json.loads((run_copy / "evaluation/test.json").read_text())
    m = json.loads((run_copy / "metrics.json").read_text())
    for k in ("mcc", "roc_auc", "accuracy", "nll", "brier"):
        assert ev[f"test/{k}"] == pytest.approx(m[f"test/{k}"], abs=1e-7)
    assert "test/loss" not in ev  # the training objective (class-weighted): a training log, not an evaluation
    assert ev["test/n"] == 60
    for k in ("mcc_ci_low", "mcc_ci_high", "ece"):  # the same bootstrap (seed 0) and predictions
        assert ev[f"test/{k}"] == pytest.approx(m[f"test/{k}"], abs=1e-7)
    assert (run_copy / "evaluation/test_predictions.csv").read_text() == (run_copy / "test_predictions.csv").read_text()
    for name in ("test_calibration.png", "test_confusion.csv", "test_curves.png"):
        assert (run_copy / "evaluation" / name).is_file()
    assert_one_line_error(cli("evaluate", run_copy), "exists; pass --overwrite")
    assert cli("evaluate", run_copy, "--overwrite").code == 0


def test_predict_applies_the_saved_preprocessing(cli, run_copy, tmp_path):
    new = tmp_path / "new_patients.csv"
    pd.read_csv(HEART).drop(columns=["DEATH_EVENT"]).to_csv(new, index=False)
    r = cli("predict", run_copy, new)
    assert r.code == 0
    out = run_copy / "predictions/new_patients.csv"
    assert f"results: {out}" in r.out
    pred = pd.read_csv(out)
    assert len(pred) == 299 and pred["p_DEATH_EVENT=1"].between(0, 1).all()
    assert list(pred.columns[:12]) == list(pd.read_csv(new).columns)  # the records' own columns first
    assert set(pred["predicted"]) <= {"DEATH_EVENT=0", "DEATH_EVENT=1"}
    y = pd.read_csv(HEART)["DEATH_EVENT"].to_numpy()
    test = stratified_split(y, 0.2, 0.2, seed=0)["test"]
    acc = ((pred["predicted"].to_numpy()[test] == "DEATH_EVENT=1") == y[test]).mean()
    m = json.loads((run_copy / "metrics.json").read_text())
    assert acc == pytest.approx(m["test/accuracy"], abs=1e-6)
    before = out.read_bytes()
    assert_one_line_error(cli("predict", run_copy, new), "exists; pass --overwrite")
    assert out.read_bytes() == before


def test_tabular_mc_dropout_predicts_the_mean_of_its_passes(cli, tmp_path):
    """The heart-failure MLP (dropout 0.1) with model.mc_dropout: each test row's and each new
    record's mutual information, and the probabilities are the passes' mean."""
    import numpy as np

    from biodl.trust import uncertainty

    out = tmp_path / "mc"
    r = cli("train", "--config", ROOT / "examples/heart_failure_mlp.yaml", "--out", out, *FAST,
            "--set", "model.mc_dropout=8", "--set", "calibration=none")
    assert r.code == 0, r.err
    test = pd.read_csv(out / "test_predictions.csv")
    assert (test["mutual_information"] >= 0).all() and test["mutual_information"].mean() > 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["test/mean_mutual_information"] == pytest.approx(test["mutual_information"].mean(), abs=1e-6)
    new = tmp_path / "new.csv"
    pd.read_csv(HEART).drop(columns=["DEATH_EVENT"]).to_csv(new, index=False)
    assert cli("predict", out, new).code == 0
    pred = pd.read_csv(out / "predictions/new.csv")
    rows = test["row"].to_numpy()
    np.testing.assert_allclose(pred["raw_p_DEATH_EVENT=1"].to_numpy()[rows], test["p_DEATH_EVENT=1"], atol=2e-6)
    np.testing.assert_allclose(pred["mutual_information"].to_numpy()[rows], test["mutual_information"], atol=2e-6)
    p = pred["raw_p_DEATH_EVENT=1"].to_numpy()
    np.testing.assert_allclose(pred["entropy"], uncertainty.entropy(np.column_stack([1 - p, p])), atol=1e-5)


# ----------------------------------------------------------------------------- bad input


def test_truncated_checkpoint(cli, run_copy):
    st = run_copy / "checkpoints/best.safetensors"
    st.write_bytes(st.read_bytes()[:100])
    assert_one_line_error(cli("evaluate", run_copy), "best.safetensors", "truncated or corrupt")
    assert not (run_copy / "evaluation").exists()


def test_checkpoint_of_another_architecture(cli, run_copy, tmp_path):
    other = tmp_path / "wide"
    assert cli("train", "--config", EXAMPLE, "--out", other, *FAST, "--set", "model.args.hidden=[64]").code == 0
    for suffix in (".safetensors", ".json"):
        shutil.copy(other / f"checkpoints/best{suffix}", run_copy / f"checkpoints/best{suffix}")
    r = cli("predict", run_copy, HEART)
    assert_one_line_error(r, "another architecture", "body.0.weight (64, 11) vs model (32, 11)")


def test_pickle_renamed_as_safetensors(cli, run_copy):
    import torch

    torch.save({"head.weight": torch.zeros(1, 16)}, run_copy / "checkpoints/best.safetensors")
    assert_one_line_error(cli("evaluate", run_copy), "best.safetensors", "never unpickles")


def test_misspelt_config_key(cli, tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text(EXAMPLE.read_text().replace("early_stopping_patience", "early_stoping_patience"))
    r = cli("train", "--config", bad, "--out", tmp_path / "out")
    assert_one_line_error(r, str(bad), "unknown key 'trainer.early_stoping_patience'",
                          "did you mean 'trainer.early_stopping_patience'")
    assert not (tmp_path / "out").exists()


def test_csv_with_missing_column(cli, run_copy, tmp_path):
    csv = tmp_path / "no_age.csv"
    pd.read_csv(HEART).drop(columns=["age", "platelets"]).to_csv(csv, index=False)
    assert_one_line_error(cli("predict", run_copy, csv), str(csv), "missing columns: age, platelets")
    assert not (run_copy / "predictions").exists()


def test_csv_with_text_in_numeric_column(cli, tmp_path):
    lines = heart_rows()
    lines[3] = lines[3].replace(",1.3,", ",1.3 mg/dL,", 1)
    csv = write_csv(tmp_path / "patients.csv", lines)
    r = cli("train", "--config", EXAMPLE, "--set", "data.dataset=null", "--set", f"data.path={csv}",
            "--out", tmp_path / "out")
    assert_one_line_error(r, str(csv), "column 'serum_creatinine'", "line 4", "'1.3 mg/dL'")
    assert not (tmp_path / "out").exists()


def test_existing_run_directory_is_never_overwritten(cli, run_copy):
    before = (run_copy / "metrics.json").read_bytes()
    r = cli("train", "--config", EXAMPLE, "--out", run_copy, *FAST)
    assert_one_line_error(r, str(run_copy), "not empty")
    assert (run_copy / "metrics.json").read_bytes() == before


@pytest.mark.parametrize("args, fragment", [
    (["run", "heart-failur"], "did you mean 'heart-failure'"),
    (["run", "heart-failure-mpl"], "did you mean 'heart-failure-mlp'"),
    (["evaluate", "/nonexistent/run"], "no such run directory"),
    (["train"], "--config: required"),
])
def test_other_user_errors(cli, args, fragment):
    assert_one_line_error(cli(*args), fragment)


def test_run_without_checkpoint(cli, run_copy):
    for p in (run_copy / "checkpoints").iterdir():
        p.unlink()
    assert_one_line_error(cli("evaluate", run_copy), "holds no model checkpoint")


def test_bugs_keep_their_traceback(cli, monkeypatch):
    import biodl.studies.heart_failure_mlp as study

    def boom(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(study, "run", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        cli("run", "heart-failure-mlp")


def test_real_process_exit_code_and_single_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {dataset: heart-failure}\ntrainer: {epoch: 3}\n")
    p = subprocess.run([sys.executable, "-m", "biodl", "train", "--config", str(bad)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"error: {bad}: unknown key 'trainer.epoch'; did you mean 'trainer.epochs'? valid keys here: "
        "checkpoint_every_steps, class_weights, compile, device, early_stopping_patience, epochs, grad_clip, "
        "mode, monitor, precision, progress"]


def test_resume_refuses_a_different_config(cli, run_copy):
    before = (run_copy / "checkpoints/last.safetensors").read_bytes()
    r = cli("train", "--config", EXAMPLE, "--out", run_copy, "--resume", *FAST, "--set", "seed=3")
    assert_one_line_error(r, "config.yaml", "differs from the config given")
    assert (run_copy / "checkpoints/last.safetensors").read_bytes() == before


def test_resume_needs_an_existing_run(cli, tmp_path):
    assert_one_line_error(cli("train", "--resume", "--out", tmp_path / "none"), "no such run directory")


def test_logistic_net_example_on_two_features(cli, tmp_path):
    out = tmp_path / "logit"
    r = cli("train", "--config", ROOT / "examples/heart_failure_logistic.yaml", "--out", out, *FAST)
    assert r.code == 0, r.err
    pre = json.loads((out / "preprocess.json").read_text())
    assert pre["features"] == ["serum_creatinine", "ejection_fraction"]
    from safetensors.torch import load_file

    w = load_file(out / "checkpoints/best.safetensors")
    assert {k: tuple(v.shape) for k, v in w.items()} == {"linear.weight": (1, 2), "linear.bias": (1,)}
    assert 0 <= json.loads((out / "metrics.json").read_text())["test/roc_auc"] <= 1


def test_debug_shows_the_traceback_of_a_user_error(cli):
    from biodl.errors import RunDirError

    with pytest.raises(RunDirError):
        cli("--debug", "evaluate", "/nonexistent/run")
