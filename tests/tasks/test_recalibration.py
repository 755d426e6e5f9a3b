"""Recalibration in runs: fitted on the validation split at the end of training, applied by
predict and evaluate, refitted by ``biodl calibrate`` without retraining, shown in the report."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biodl import runs
from biodl.trust import calibration
from biodl.report.predictions import load_predictions
from tests.conftest import ROOT, assert_one_line_error, main_ok

FAST = ["--set", "trainer.epochs=2", "--set", "trainer.progress=false", "--set", "n_boot=100",
        "--set", "data.batch_size=16", "--set", "model.args={width: 8, blocks: 1}"]


def _images(root, n=90, classes=3, size=16):
    """Class k has a bright square at a place of its own (with noise that makes it imperfect)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        k = i % classes
        img = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        if rng.random() > 0.2:
            img[4 * k:4 * k + 4, 2:6] = 240
        d = root / f"class{k}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recal")
    _images(tmp / "data")
    main_ok("train", "--data", tmp / "data", "--out", tmp / "run", *FAST, "--set", "trainer.epochs=8",
            "--set", f"data.cache_dir={tmp / 'cache'}")
    return tmp


def test_training_fits_temperature_on_validation_and_reports_before_and_after(image_run):
    run = image_run / "run"
    cal = runs.read_calibration(run)
    assert cal.method == "temperature" and cal.temperature > 0
    y_val, p_val, _, _ = load_predictions(run / "val_predictions.csv")
    assert cal.fitted_on["n"] == len(y_val)  # the validation split, and nothing else
    again = calibration.fit("temperature", y_val, p_val)
    assert again.temperature == pytest.approx(cal.temperature, rel=1e-5)  # the CSV keeps 8 digits
    m = json.loads((run / "metrics.json").read_text())
    y, prob, _, _ = load_predictions(run / "test_predictions.csv")
    want = calibration.calibration_metrics(y, prob, cal.apply(prob), "test", 100)
    for key in ("test/ece", "test/ece_after", "test/brier", "test/nll_after", "test/nll_after_ci_low",
                "test/classwise_ece_after", "test/mce"):
        assert m[key] == pytest.approx(want[key]), key
    html = (run / "report.html").read_text()
    assert "Trust: calibration" in html and "temperature" in html and (run / "test_calibration_after.png").is_file()


def test_training_fits_conformal_sets_on_validation_and_writes_each_test_set(image_run):
    from biodl.trust import conformal

    run = image_run / "run"
    pred = runs.read_conformal(run)
    assert pred.method == "lac" and pred.alpha == 0.1 and pred.on == "raw"
    y_val, p_val, _, _ = load_predictions(run / "val_predictions.csv")
    assert pred.n == len(y_val)
    refit = conformal.fit("lac", y_val, p_val, 0.1)
    assert refit.threshold[0] == pytest.approx(pred.threshold[0], abs=1e-6)  # from the saved validation only
    df = pd.read_csv(run / "test_predictions.csv", keep_default_na=False)
    y, prob, classes, _ = load_predictions(run / "test_predictions.csv")
    member = pred.sets(prob)
    assert df["set"].tolist() == conformal.describe(member, classes)
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/conformal_coverage"] == pytest.approx(member[np.arange(len(y)), y].mean())
    assert m["test/conformal_set_size"] == pytest.approx(member.sum(1).mean())
    assert {"test/conformal_aps_raw_coverage", "test/conformal_mondrian_recalibrated_set_size"} <= set(m)
    assert "test/conformal_ordinal_raw_coverage" not in m  # not graded
    assert "Prediction sets: lac" in (run / "report.html").read_text()


def test_predict_applies_the_recalibration_and_keeps_the_raw_probabilities(image_run, cli, tmp_path):
    run = image_run / "run"
    r = cli("predict", run, image_run / "data" / "class1", "--out", tmp_path / "p.csv")
    assert r.code == 0, r.err
    df = pd.read_csv(tmp_path / "p.csv")
    raw = df[[f"raw_p_class{k}" for k in range(3)]].to_numpy()
    final = df[[f"p_class{k}" for k in range(3)]].to_numpy()
    np.testing.assert_allclose(final, runs.read_calibration(run).apply(raw), atol=2e-6)
    assert (df["predicted"] == [f"class{k}" for k in final.argmax(1)]).all()
    from biodl.trust import conformal

    assert df["set"].tolist() == conformal.describe(runs.read_conformal(run).sets(raw), [f"class{k}" for k in range(3)])


def test_calibrate_refits_without_retraining_and_refuses_what_it_cannot(image_run, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(image_run / "run", run)
    before = (run / "calibration.json").read_text()
    assert_one_line_error(cli("calibrate", run, "--method", "vector"), "calibration.json", "--overwrite")
    assert_one_line_error(cli("calibrate", run, "--method", "platt", "--overwrite"), "two-class runs")
    assert_one_line_error(cli("calibrate", run, "--method", "histogram", "--overwrite"), "unknown recalibration")
    assert (run / "calibration.json").read_text() == before  # nothing written by a refused command
    r = cli("calibrate", run, "--method", "vector", "--overwrite")
    assert r.code == 0, r.err
    cal = runs.read_calibration(run)
    assert cal.method == "vector" and len(cal.scale) == 3
    y, prob, _, _ = load_predictions(run / "test_predictions.csv")
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/brier_after"] == pytest.approx(calibration.calibration_metrics(
        y, prob, cal.apply(prob), "test", 100)["test/brier_after"])
    assert m["test/accuracy"] == json.loads((image_run / "run/metrics.json").read_text())["test/accuracy"]
    (run / "val_predictions.csv").unlink()
    assert_one_line_error(cli("calibrate", run, "--overwrite"), "val_predictions.csv")


def test_calibrate_refuses_a_segmentation_run(cli, tmp_path):
    from biodl import runs
    from biodl.config import SegmentationRunConfig

    seg = tmp_path / "seg"
    seg.mkdir()
    runs.save_config(seg, SegmentationRunConfig(data={"dataset": "chase_db1"}))
    assert_one_line_error(cli("calibrate", seg), "recalibrates classification runs", "segmentation")
    assert not (seg / "calibration.json").exists()


@pytest.mark.parametrize("override, fragment", [("calibration=isotonic", "isotonic recalibrates two-class runs"),
                                                ("conformal.method=ordinal", "ordinal sets are for graded labels"),
                                                ("conformal.alpha=1.5", "conformal.alpha"),
                                                ("conformal.alpha=0", "conformal.alpha")])
def test_what_the_run_cannot_take_is_refused_before_training(tmp_path, cli, override, fragment):
    _images(tmp_path / "data", n=30)
    r = cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run", *FAST, "--set", override,
            "--set", f"data.cache_dir={tmp_path / 'cache'}")
    assert_one_line_error(r, fragment)
    assert not (tmp_path / "run").exists()


def test_tabular_runs_recalibrate_and_predict_with_it(cli, tmp_path):
    from tests.conftest import HEART

    run = tmp_path / "run"
    r = cli("train", "--config", ROOT / "examples/heart_failure_mlp.yaml", "--out", run, "--set", "trainer.epochs=3",
            "--set", "trainer.progress=false", "--set", "calibration=platt", "--set", "n_boot=100")
    assert r.code == 0, r.err
    cal = runs.read_calibration(run)
    assert cal.method == "platt" and "test/brier_after" in json.loads((run / "metrics.json").read_text())
    r = cli("predict", run, HEART, "--out", tmp_path / "p.csv")
    assert r.code == 0, r.err
    df = pd.read_csv(tmp_path / "p.csv")
    raw = df["raw_p_DEATH_EVENT=1"].to_numpy()
    np.testing.assert_allclose(df["p_DEATH_EVENT=1"], cal.apply(np.column_stack([1 - raw, raw]))[:, 1],
                               atol=1e-5)  # both rounded to 6 decimals
    r = cli("evaluate", run)
    assert r.code == 0, r.err
    ev = json.loads((run / "evaluation/test.json").read_text())
    m = json.loads((run / "metrics.json").read_text())
    assert ev["test/brier_after"] == pytest.approx(m["test/brier_after"], abs=1e-6)
    assert ev["test/conformal_coverage"] == pytest.approx(m["test/conformal_coverage"])  # the same sets
    assert set(df["set"]) <= {"{DEATH_EVENT=0}", "{DEATH_EVENT=1}", "{DEATH_EVENT=0, DEATH_EVENT=1}", "{}"}


def test_explain_shows_each_cases_nearest_training_images_a_training_image_first(image_run, cli, tmp_path):
    """Similar cases: a training image's nearest training image is itself, at cosine similarity 1;
    a picked test image's neighbours are training images only; the test set gets a feature map."""
    from biodl import runs
    from biodl.tasks.image_data import load_images, split_images

    run = tmp_path / "run"
    shutil.copytree(image_run / "run", run)
    config = runs.load_run_config(run)
    data, path = load_images(config)
    parts, _ = split_images(config, data, path)
    row = int(parts["train"][3])
    r = cli("explain", run, data.sources[row], "--method", "gradcam", "--no-sanity")
    assert r.code == 0, r.err
    e = json.loads((run / "explain/explain.json").read_text())
    near = e["images"][0]["similar"]
    assert near[0]["row"] == row and near[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert len(near) == 5 and [n["similarity"] for n in near] == sorted((n["similarity"] for n in near), reverse=True)
    r = cli("explain", run, "--method", "gradcam", "--pick", "tp,fp", "--n", "2", "--no-sanity", "--overwrite")
    assert r.code == 0, r.err
    e = json.loads((run / "explain/explain.json").read_text())
    train = set(parts["train"].tolist())
    assert all(n["row"] in train for img in e["images"] for n in img["similar"])
    for name in ("similar.png", "feature_map.png"):
        assert (run / "explain" / name).is_file()
    html = (run / "report.html").read_text()
    assert "similar" in html and "feature map" in html
