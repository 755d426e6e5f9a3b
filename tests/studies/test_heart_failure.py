"""The heart-failure study: outputs, reproducibility, and one-line errors for bad --data."""

import json

import pandas as pd
import pytest

from tests.conftest import HEART, assert_one_line_error, edit_cell

FAST = ["--set", "n_splits=3", "--set", "n_boot=200", "--set", "progress=false"]


@pytest.fixture(scope="module")
def study_run(tutorial):
    """The run the heart-failure tutorial makes (read only!)."""
    return tutorial("02-chicco-jurman.ipynb").run("heart-failure")


def test_outputs(study_run):
    names = {p.name for p in study_run.iterdir()}
    for stem in ("descriptive", "table4_comparison", "table4_long", "table11_comparison", "two_features",
                 "borda_impurity", "borda_permutation"):
        assert {f"{stem}.csv", f"{stem}.md"} <= names, stem
    for png in ("importance_impurity.png", "importance_permutation.png", "borda_impurity.png", "borda_permutation.png",
                "roc_pr_best.png", "distributions.png"):
        assert (study_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert {"manifest.json", "config.yaml", "metrics.json", "protocol_differences.md"} <= names
    long = pd.read_csv(study_run / "table4_long.csv")
    assert sorted(long["key"].unique()) == sorted(
        ["rf", "dt", "gb", "linreg", "onerule", "ann", "nb", "svm_rbf", "svm_linear", "knn"])
    assert len(long) == 10 * 7
    assert ((long["ci_low"] <= long["mean"]) & (long["mean"] <= long["ci_high"])).all()
    assert (long["paper_in_ci"] == ((long["ci_low"] <= long["paper"]) & (long["paper"] <= long["ci_high"]))).all()
    metrics = json.loads((study_run / "metrics.json").read_text())
    for key in ("rf/mcc_mean", "rf/mcc_ci_low", "rf/mcc_ci_high", "knn/roc_auc_mean", "logistic_net_2f/mcc_mean",
                "rf_top2_train/mcc_mean", "rf_2f/mcc_mean", "lr_time_2/mcc_mean"):
        assert -1 <= metrics[key] <= 1, key
    assert "leaks the outcome" in (study_run / "table4_comparison.md").read_text()
    assert "LEAKING" in (study_run / "table11_comparison.md").read_text()
    borda = pd.read_csv(study_run / "borda_impurity.csv")
    assert sorted(borda["feature"]) == sorted(pd.read_csv(HEART).columns.drop(["time", "DEATH_EVENT"]))
    assert "time" not in borda["feature"].tolist()
    sets = pd.read_csv(study_run / "conformal.csv")
    assert sets["sets"].tolist() == ["LAC (one threshold)", "Mondrian (a threshold per class)"]
    for kind in ("lac", "mondrian"):
        assert 0.5 <= metrics[f"conformal/{kind}_coverage_mean"] <= 1
        assert 0.5 <= metrics[f"conformal/{kind}_set_size_mean"] <= 2
        assert sum(metrics[f"conformal/{kind}_share_{s}_mean"] for s in ("empty", "class0", "class1", "both")) == \
            pytest.approx(1)
    assert "Trust: conformal prediction sets" in (study_run / "report.html").read_text()


def test_rerun_gives_identical_tables(study_run, cli, tmp_path):
    import yaml

    config = yaml.safe_load((study_run / "config.yaml").read_text())
    again = [a for key in ("n_splits", "n_boot", "progress") for a in ("--set", f"{key}={config[key]}")]
    out = tmp_path / "again"
    assert cli("run", "heart-failure", "--out", out, *again, "--set", "n_jobs=1").code == 0  # it ran n_jobs=-1
    for name in ("metrics.json", "table4_long.csv", "two_features.csv", "borda_permutation.csv", "descriptive.csv"):
        assert (out / name).read_text() == (study_run / name).read_text(), name


@pytest.mark.parametrize("column, value, fragments", [
    ("platelets", "263358.03yes", ["column 'platelets'", "line 3", "'263358.03yes'"]),
    ("platelets", "196000++++", ["column 'platelets'", "line 3", "'196000++++'"]),
    ("age", "", ["column 'age'", "blank value at line 3"]),
    ("anaemia", "2", ["column 'anaemia'", "must be 0 or 1", "line 3"]),
])
def test_bad_cells(cli, tmp_path, column, value, fragments):
    path = edit_cell(tmp_path / "records.csv", 3, column, value)
    r = cli("run", "heart-failure", "--data", path, "--out", tmp_path / "out", *FAST)
    assert_one_line_error(r, str(path), *fragments)
    assert not (tmp_path / "out").exists()


def test_missing_column(cli, tmp_path):
    path = tmp_path / "records.csv"
    pd.read_csv(HEART).drop(columns=["serum_sodium"]).to_csv(path, index=False)
    assert_one_line_error(cli("run", "heart-failure", "--data", path, "--out", tmp_path / "out"),
                          str(path), "missing column: serum_sodium")
    assert not (tmp_path / "out").exists()


def test_single_class_outcome(cli, tmp_path):
    path = tmp_path / "records.csv"
    df = pd.read_csv(HEART)
    df[df["DEATH_EVENT"] == 0].to_csv(path, index=False)
    assert_one_line_error(cli("run", "heart-failure", "--data", path, "--out", tmp_path / "out"),
                          str(path), "column 'DEATH_EVENT': a single class")
    assert not (tmp_path / "out").exists()


def test_empty_file(cli, tmp_path):
    path = tmp_path / "records.csv"
    path.write_text("")
    assert_one_line_error(cli("run", "heart-failure", "--data", path, "--out", tmp_path / "out"),
                          str(path), "empty file")
    assert not (tmp_path / "out").exists()


def test_unknown_study_setting(cli, tmp_path):
    r = cli("run", "heart-failure", "--set", "n_split=5", "--out", tmp_path / "out")
    assert_one_line_error(r, "unknown key 'n_split'", "did you mean 'n_splits'")
