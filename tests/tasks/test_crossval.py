"""k-fold cross-validation (data.split: kfold): folds by patient, fold runs inside the parent,
pooled out-of-fold results, the fold models together as the parent's model, resume by fold."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biodl import runs
from biodl.data.splits import kfold_splits
from biodl.errors import DataError
from tests.conftest import assert_one_line_error, main_ok


def test_kfold_by_patient_tests_each_patient_once_and_never_mixes_parts():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(20), rng.integers(5, 15, 20))
    labels = (patients % 3 == 0).astype(int)  # a patient's images share its class
    folds = kfold_splits(labels, patients, 5, 0.15, seed=0)
    tested = np.concatenate([f["test"] for f in folds])
    assert sorted(tested) == list(range(len(labels)))  # every image tested exactly once
    for f in folds:
        parts = {k: set(patients[v]) for k, v in f.items()}
        assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"] and not parts["val"] & \
            parts["test"]
        assert len(parts["val"]) >= 1 and set(labels[f["test"]]) == {0, 1}  # stratified: both classes tested
    with pytest.raises(DataError, match="4 patients are fewer than the 5 folds"):
        kfold_splits(labels[:40], np.repeat(np.arange(4), 10), 5, 0.15, seed=0)
    plain = kfold_splits(np.arange(50) % 2, None, 5, 0.2, seed=0)  # no patients: stratified folds of images
    assert sorted(np.concatenate([f["test"] for f in plain])) == list(range(50))
    assert all(abs(np.mean((np.arange(50) % 2)[f["test"]]) - 0.5) <= 0.1 for f in plain)


def _kfold_args(tmp, out):
    return ["train", "--data", str(tmp / "tree"), "--out", str(out), "--epochs", "2", "--set", "data.split=kfold",
            "--set", "data.folds=3", "--set", "trainer.progress=false", "--set", "n_boot=100",
            "--set", f"data.cache_dir={tmp / 'cache'}", "--set", "model.args={width: 8, blocks: 1}"]


def _tree(root, n_patients=9, per=8):
    rng = np.random.default_rng(0)
    for p in range(n_patients):
        for i in range(per):
            label = (p + i) % 2
            img = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
            if label:
                img[2:7, 2:7] = 250
            d = root / f"pat{p}" / str(label)
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"pat{p}_idx5_x{50 * i + 1}_y1_class{label}.png")
    return root


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kfold")
    _tree(tmp / "tree")
    main_ok(*_kfold_args(tmp, tmp / "run"))
    return tmp


def test_kfold_run_pools_out_of_fold_predictions(kfold_run):
    run = kfold_run / "run"
    for k in (1, 2, 3):
        assert (run / f"folds/fold{k}/metrics.json").is_file() and (run / f"folds/fold{k}/report.html").is_file()
    pred = pd.read_csv(run / "test_predictions.csv", dtype={"patient": str})
    assert len(pred) == 72 and sorted(pred["row"]) == list(range(72))  # every image once
    assert set(pred["fold"]) == {1, 2, 3}
    assert pred.groupby("patient")["fold"].nunique().max() == 1  # a patient's images share one fold
    for k in (1, 2, 3):
        fold_pred = pd.read_csv(run / f"folds/fold{k}/test_predictions.csv", dtype={"patient": str})
        mine = pred[pred["fold"] == k].drop(columns="fold").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, fold_pred)  # the fold's own predictions, as they were
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/ci_clusters"] == 9 and m["test/accuracy_ci_low"] <= m["test/accuracy"] <= m["test/accuracy_ci_high"]
    acc = (pred[["p_0", "p_1"]].to_numpy().argmax(1) == pred["label"]).mean()
    assert m["test/accuracy"] == pytest.approx(acc)
    for k in (1, 2, 3):
        fm = json.loads((run / f"folds/fold{k}/metrics.json").read_text())
        assert m[f"fold{k}/accuracy"] == fm["test/accuracy"]
    assert {"test/f1", "test/precision", "test/sensitivity", "test/specificity", "test/npv", "test/pr_auc"} <= set(m)
    folds_table = pd.read_csv(run / "folds.csv")
    assert folds_table["test images"].sum() == 72 and folds_table["test patients"].sum() == 9
    assert "Per fold (3 folds)" in (run / "report.html").read_text()


def test_kfold_parent_predicts_with_the_mean_of_its_fold_models(kfold_run, cli, tmp_path):
    run = kfold_run / "run"
    images = kfold_run / "tree" / "pat0" / "1"
    assert cli("predict", run, images, "--out", tmp_path / "all.csv").code == 0
    parent = pd.read_csv(tmp_path / "all.csv")
    fold_p = []
    for k in (1, 2, 3):
        assert cli("predict", run / f"folds/fold{k}", images, "--out", tmp_path / f"f{k}.csv").code == 0
        fold_p.append(pd.read_csv(tmp_path / f"f{k}.csv")["p_1"].to_numpy())
    np.testing.assert_allclose(parent["p_1"].to_numpy(), np.mean(fold_p, axis=0), atol=2e-6)
    assert_one_line_error(cli("evaluate", run), "out-of-fold predictions", "--data")
    r = cli("evaluate", run, "--data", kfold_run / "tree")  # external validation: the fold models together
    assert r.code == 0, r.err
    assert json.loads((run / "evaluation/tree.json").read_text())["tree/ci_clusters"] == 9


def test_kfold_resumes_at_the_fold_it_was_in(kfold_run, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(kfold_run / "run", run)
    shutil.rmtree(run / "folds/fold3")  # as if interrupted before fold 3
    (run / "metrics.json").unlink()
    before = (run / "folds/fold1/metrics.json").stat().st_mtime_ns
    r = cli("train", "--resume", "--out", run)
    assert r.code == 0, r.err
    assert (run / "folds/fold1/metrics.json").stat().st_mtime_ns == before  # finished folds are kept
    assert (run / "test_predictions.csv").read_text() == (kfold_run / "run/test_predictions.csv").read_text()


def test_a_kfold_run_killed_inside_a_fold_resumes_there_and_ends_as_if_never_killed(kfold_run, tmp_path):
    """A real SIGKILL after fold 2's second optimiser step (each fold: 2 epochs of 1 step), then
    --resume: fold 1 is kept as it was, fold 2 goes on from its epoch-1 checkpoint, and every
    result equals the uninterrupted run's."""
    import os
    import signal

    from safetensors.torch import load_file

    from tests.forked import biodl  # a child process, forked from a warm server

    run, ref = tmp_path / "run", kfold_run / "run"
    env = {**os.environ, "BIODL_CRASH_AT": "step:4"}
    killed = biodl(_kfold_args(kfold_run, run), env=env, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / "folds/fold1/metrics.json").is_file() and not (run / "folds/fold2/metrics.json").exists()
    assert (run / "folds/fold2/checkpoints/last.json").is_file() and not (run / "folds/fold3").exists()
    assert not (run / "metrics.json").exists()
    fold1 = (run / "folds/fold1/metrics.json").stat().st_mtime_ns
    resumed = biodl(["train", "--resume", "--out", run], timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "folds/fold1/metrics.json").stat().st_mtime_ns == fold1
    assert json.loads((run / "folds/fold2/manifest.json").read_text())["resumed"]  # continued, not restarted
    for k in (1, 2, 3):
        want, got = (load_file(r / f"folds/fold{k}/checkpoints/last.safetensors") for r in (ref, run))
        assert want.keys() == got.keys() and all(want[t].equal(got[t]) for t in want), k
    assert (run / "test_predictions.csv").read_text() == (ref / "test_predictions.csv").read_text()
    assert (run / "metrics.json").read_text() == (ref / "metrics.json").read_text()


def test_fewer_patients_than_folds_is_one_line_and_writes_nothing(tmp_path, cli):
    _tree(tmp_path / "tree", n_patients=3)
    r = cli("train", "--data", tmp_path / "tree", "--out", tmp_path / "run", "--set", "data.split=kfold",
            "--set", f"data.cache_dir={tmp_path / 'cache'}")
    assert_one_line_error(r, "3 patients are fewer than the 5 folds (data.folds)")
    assert not (tmp_path / "run").exists()


def test_a_fold_run_explains_its_own_test_patients(kfold_run, cli, tmp_path):
    fold = tmp_path / "fold1"
    shutil.copytree(kfold_run / "run/folds/fold1", fold)
    r = cli("explain", fold, "--method", "gradcam,ig", "--pick", "tp,fp,tn", "--n", "1", "--no-sanity",
            "--steps", "8")
    assert r.code == 0, r.err
    e = json.loads((fold / "explain/explain.json").read_text())
    test_rows = set(pd.read_csv(fold / "test_predictions.csv")["row"])
    for img in e["images"]:
        assert int(img["source"].removeprefix("test row ")) in test_rows  # only patients this model never saw
        assert set(img["methods"]) == {"gradcam", "ig"}
    assert "Attributions" in (fold / "report.html").read_text()


def test_a_kfold_parent_explains_out_of_fold_images_each_by_the_model_that_tested_it(kfold_run, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(kfold_run / "run", run)
    r = cli("explain", run, "--method", "gradcam,ig", "--pick", "tp,fp", "--n", "2", "--no-sanity", "--steps", "8")
    assert r.code == 0, r.err
    e = json.loads((run / "explain/explain.json").read_text())
    pred = pd.read_csv(run / "test_predictions.csv", dtype={"patient": str}).set_index("row")
    assert {img["outcome"] for img in e["images"]} <= {"tp", "fp"} and len(e["images"]) >= 2
    for img in e["images"]:
        row = pred.loc[img["row"]]
        assert img["fold"] == row["fold"] and f"fold {row['fold']}" in img["source"] and row["patient"] in img["source"]
        # the probability explained is the one the pooled predictions hold: the same fold model's
        assert img["probability"] == pytest.approx(row[f"p_{img['predicted']}"], abs=1e-5)
        assert (img["outcome"] == "tp") == (row["label"] == 1) and img["predicted"] == "1"
    assert "Attributions" in (run / "report.html").read_text()


def test_a_second_run_reads_the_cache_and_decodes_nothing(kfold_run, monkeypatch):
    import biodl.data.folders as folders
    from biodl.runs import load_run_config
    from biodl.tasks.image_data import load_images

    config = load_run_config(kfold_run / "run")

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(folders, "_decode", no_decode)
    data, _ = load_images(config)  # the k-fold run above filled the cache
    assert len(data) == 72 and data.patients is not None


def test_kfold_parent_pools_each_folds_own_recalibration_and_sets(kfold_run, cli, tmp_path):
    from biodl.trust import calibration
    from biodl.evaluation import calibration_scores

    run = tmp_path / "run"
    shutil.copytree(kfold_run / "run", run)
    pred = pd.read_csv(run / "test_predictions.csv", keep_default_na=False, dtype={"patient": str})
    y, prob, fold = pred["label"].to_numpy(), pred[["p_0", "p_1"]].to_numpy(), pred["fold"].to_numpy()

    def expected_brier():
        cals = [runs.read_calibration(run / f"folds/fold{k}") for k in (1, 2, 3)]
        return calibration_scores(y, calibration.apply_per_fold(prob, fold, cals))["brier"]

    m = json.loads((run / "metrics.json").read_text())
    assert m["test/brier_after"] == pytest.approx(expected_brier())
    for k in (1, 2, 3):  # each row's set is its own fold's
        own = pd.read_csv(run / f"folds/fold{k}/test_predictions.csv", keep_default_na=False)["set"].tolist()
        assert pred.loc[pred["fold"] == k, "set"].tolist() == own
    r = cli("calibrate", run, "--method", "platt", "--overwrite")
    assert r.code == 0, r.err
    assert all(runs.read_calibration(run / f"folds/fold{k}").method == "platt" for k in (1, 2, 3))
    assert not (run / "calibration.json").exists()
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/brier_after"] == pytest.approx(expected_brier())
