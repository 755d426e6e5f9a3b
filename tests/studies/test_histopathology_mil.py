"""``biodl run histopathology-mil`` on a small patient tree with a given 2-fold patch model: both
MIL runs on the same folds, the pooling table beside them, a rerun keeping the finished parts."""

import json

import pandas as pd

from tests.conftest import assert_one_line_error


def test_the_study_compares_attention_mean_and_patch_pooling(idc_tree, idc_patches, tmp_path, cli):
    args = ["run", "histopathology-mil", "--data", idc_tree, "--out", tmp_path / "study",
            "--set", f"data.extractor={idc_patches}", "--set", f"data.features={tmp_path / 'features'}",
            "--set", "data.folds=2", "--set", "trainer.epochs=3", "--set", "trainer.progress=false",
            "--set", "n_boot=100"]
    r = cli(*args)
    assert r.code == 0, r.err
    abmil, mean = tmp_path / "study" / "abmil", tmp_path / "study" / "mean"
    table = pd.read_csv(abmil / "pooling.csv")
    assert table["bag score"].tolist() == [
        "attention MIL (abmil)", "mean pooling MIL (same features)", "patch model, mean of tile probabilities",
        "patch model, max of tile probabilities", "patch model, top-3 mean of tile probabilities"]
    a = json.loads((abmil / "metrics.json").read_text())
    assert table.loc[0, "ROC AUC"].startswith(f"{a['test/roc_auc']:.3f} [")
    assert "pooling: mean" in (mean / "config.yaml").read_text()
    same = [pd.read_csv(d / "test_predictions.csv")["source"].tolist() for d in (abmil, mean)]
    assert same[0] == same[1]  # the same bags, out of the same folds
    assert "Against pooling" in (abmil / "report.html").read_text()
    before = (abmil / "metrics.json").stat().st_mtime_ns
    r = cli(*args)  # a rerun keeps what is finished
    assert r.code == 0 and (abmil / "metrics.json").stat().st_mtime_ns == before
    assert_one_line_error(cli(*args, "--set", "seed=3"), "was run with another config")
