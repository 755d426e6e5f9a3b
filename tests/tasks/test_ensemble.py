"""Deep ensembles (--ensemble k): members are child runs on one split, the parent holds the mean
of their probabilities with each case's uncertainty, its own recalibration and sets, and an
interrupted ensemble resumes with the missing members only."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from biodl import runs
from biodl.trust import calibration, uncertainty
from tests.conftest import assert_one_line_error, main_ok
from tests.tasks.test_recalibration import FAST, _images


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ens")
    _images(tmp / "data")
    main_ok("train", "--data", tmp / "data", "--out", tmp / "run", *FAST, "--set", "trainer.epochs=4",
            "--set", f"data.cache_dir={tmp / 'cache'}", "--ensemble", "3")
    return tmp


def _probs(path):
    df = pd.read_csv(path, keep_default_na=False)
    return df, df[[f"p_class{k}" for k in range(3)]].to_numpy()


def test_the_parent_holds_the_members_mean_and_its_uncertainty(ensemble_run):
    run = ensemble_run / "run"
    seeds = [json.loads((run / f"members/member{k}/manifest.json").read_text())["seed"] for k in (1, 2, 3)]
    assert seeds == [0, 1, 2]
    parent, mean = _probs(run / "test_predictions.csv")
    members = [_probs(run / f"members/member{k}/test_predictions.csv") for k in (1, 2, 3)]
    assert all((m["row"] == parent["row"]).all() for m, _ in members)  # one split for all
    stack = np.stack([p for _, p in members])
    np.testing.assert_allclose(mean, stack.mean(0), atol=1e-6)
    parts = uncertainty.decompose(stack)
    np.testing.assert_allclose(parent["mutual_information"], parts["mutual_information"], atol=1e-6)
    np.testing.assert_allclose(parent["entropy"], parts["entropy"], atol=1e-6)
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/mean_mutual_information"] > 0  # members from different seeds disagree somewhat
    assert m["test/aurc_entropy"] == pytest.approx(uncertainty.aurc(parent["label"].to_numpy(), mean,
                                                                    parent["entropy"].to_numpy()), abs=1e-6)
    assert {"member1/accuracy", "member3/roc_auc", "test/conformal_coverage"} <= set(m)
    _, p_val = _probs(run / "val_predictions.csv")  # the members' mean on the validation split ...
    members_val = np.mean([_probs(run / f"members/member{k}/val_predictions.csv")[1] for k in (1, 2, 3)], axis=0)
    np.testing.assert_allclose(p_val, members_val, atol=1e-6)
    y_val = pd.read_csv(run / "val_predictions.csv")["label"].to_numpy()
    refit = calibration.fit("temperature", y_val, p_val)  # ... is what the parent's recalibration was fitted on
    assert runs.read_calibration(run).temperature == pytest.approx(refit.temperature, rel=1e-5)
    html = (run / "report.html").read_text()
    assert "Ensemble" in html and (run / "test_referral.png").is_file() and "members" in html


def test_the_parent_predicts_with_its_members_and_its_own_recalibration(ensemble_run, cli, tmp_path):
    run = ensemble_run / "run"
    images = ensemble_run / "data" / "class2"
    assert cli("predict", run, images, "--out", tmp_path / "all.csv").code == 0
    parent = pd.read_csv(tmp_path / "all.csv")
    raw = []
    for k in (1, 2, 3):
        assert cli("predict", run / f"members/member{k}", images, "--out", tmp_path / f"m{k}.csv").code == 0
        raw.append(pd.read_csv(tmp_path / f"m{k}.csv")[[f"raw_p_class{c}" for c in range(3)]].to_numpy())
    want = runs.read_calibration(run).apply(np.mean(raw, axis=0))
    np.testing.assert_allclose(parent[[f"p_class{c}" for c in range(3)]].to_numpy(), want, atol=1e-5)
    r = cli("evaluate", run)  # its own test split, by the members together
    assert r.code == 0, r.err
    ev = json.loads((run / "evaluation/test.json").read_text())
    assert ev["test/accuracy"] == pytest.approx(json.loads((run / "metrics.json").read_text())["test/accuracy"])


def test_an_interrupted_ensemble_trains_the_missing_members_only(ensemble_run, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ensemble_run / "run", run)
    shutil.rmtree(run / "members/member3")  # as if killed before member 3
    (run / "metrics.json").unlink()
    kept = (run / "members/member1/metrics.json").stat().st_mtime_ns
    r = cli("train", "--resume", "--out", run)
    assert r.code == 0, r.err
    assert (run / "members/member1/metrics.json").stat().st_mtime_ns == kept
    assert (run / "test_predictions.csv").read_text() == (ensemble_run / "run/test_predictions.csv").read_text()


def test_an_ensemble_of_folds_and_a_broken_member_are_one_line_errors(ensemble_run, cli, tmp_path):
    r = cli("train", "--data", ensemble_run / "data", "--out", tmp_path / "kf", *FAST, "--ensemble", "2",
            "--set", "data.split=kfold", "--set", "data.folds=3", "--set", f"data.cache_dir={ensemble_run / 'cache'}")
    assert_one_line_error(r, "ensemble", "not supported")
    assert not (tmp_path / "kf").exists()
    run = tmp_path / "run"
    shutil.copytree(ensemble_run / "run", run)
    (run / "members/member2/test_predictions.csv").write_text("row,label\n")
    r = cli("train", "--resume", "--out", run)  # member 2 looks finished but its predictions are gone
    assert_one_line_error(r, "member2", "delete", "--resume")


def test_a_tabular_ensemble_averages_its_members_in_train_evaluate_and_predict(cli, tmp_path):
    from tests.conftest import FAST as TABULAR, HEART, ROOT

    run = tmp_path / "hf"
    r = cli("train", "--config", ROOT / "examples/heart_failure_mlp.yaml", "--out", run, *TABULAR, "--ensemble", "2")
    assert r.code == 0, r.err
    cols = ["p_DEATH_EVENT=0", "p_DEATH_EVENT=1"]
    parent = pd.read_csv(run / "test_predictions.csv")
    members = [pd.read_csv(run / f"members/member{k}/test_predictions.csv") for k in (1, 2)]
    assert all((m["row"] == parent["row"]).all() for m in members)  # one split
    np.testing.assert_allclose(parent[cols], np.mean([m[cols].to_numpy() for m in members], axis=0), atol=1e-6)
    assert (parent["mutual_information"] >= 0).all() and parent["mutual_information"].max() > 0
    m = json.loads((run / "metrics.json").read_text())
    assert {"member1/roc_auc", "member2/roc_auc", "test/conformal_coverage", "test/ece_after"} <= set(m)
    assert json.loads((run / "preprocess.json").read_text())["members"] == 2
    assert cli("evaluate", run).code == 0  # the parent's model is its members' mean
    ev = json.loads((run / "evaluation/test.json").read_text())
    assert ev["test/roc_auc"] == pytest.approx(m["test/roc_auc"], abs=1e-6)
    new = tmp_path / "new.csv"
    pd.read_csv(HEART).drop(columns=["DEATH_EVENT"]).to_csv(new, index=False)
    assert cli("predict", run, new).code == 0
    pred = pd.read_csv(run / "predictions/new.csv")
    raw = pred["raw_p_DEATH_EVENT=1"].to_numpy()[parent["row"].to_numpy()]
    np.testing.assert_allclose(raw, parent["p_DEATH_EVENT=1"], atol=2e-6)
