"""``task: mil`` on real IDC tissue: four patients' patches as mosaics cut into 4 x 4 windows, the
features of a 2-fold patch model (fold k's network for fold k, on its patients), attention MIL
k-fold with pooled tiles, external evaluation on a patient tree, and bad input refused."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from biodl.datasets import embedded_path
from tests.conftest import IDC_PATIENTS as PATIENTS
from tests.conftest import assert_one_line_error, main_ok

IDC = embedded_path("idc")
FAST = ["--set", "trainer.progress=false", "--set", "n_boot=100"]


@pytest.fixture(scope="module")
def tree(idc_tree):
    return idc_tree


@pytest.fixture(scope="module")
def extractor(idc_patches):
    return idc_patches


def _mil_config(tmp, tree, extractor, **data):
    cfg = {"name": "mil", "task": "mil", "data": {"path": str(tree), "extractor": str(extractor),
           "features": str(tmp / "features"), "folds": 2, "classes": ["no IDC", "IDC"], **data},
           "trainer": {"epochs": 3}}
    path = tmp / "mil.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def mil_run(tree, extractor, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("milrun")
    main_ok("train", "--config", _mil_config(tmp, tree, extractor), "--out", tmp / "run", *FAST)
    return tmp / "run"


def test_each_fold_tests_its_extractors_patients_on_its_features(mil_run, extractor):
    for k in (1, 2):
        fold = mil_run / "folds" / f"fold{k}"
        manifest = json.loads((fold / "manifest.json").read_text())
        ext = extractor / "folds" / f"fold{k}"
        theirs = set(pd.read_csv(ext / "test_predictions.csv", dtype={"patient": str})["patient"])
        assert set(manifest["patients"]["test"]) == theirs
        pre = json.loads((fold / "preprocess.json").read_text())
        assert pre["extractor"] == str(ext.resolve()) and pre["dim"] == 32 and pre["tile"] == 50
    folds = [json.loads((mil_run / "folds" / f"fold{k}" / "preprocess.json").read_text())["provenance"]
             for k in (1, 2)]
    assert folds[0]["weights_sha256"] != folds[1]["weights_sha256"]  # each fold its own network


def test_bags_tiles_and_attention_of_the_pooled_run(mil_run):
    pred = pd.read_csv(mil_run / "test_predictions.csv", dtype={"patient": str})
    # 4 x 4 windows with >= 4 tiles of the four patients, each tested once
    assert len(pred) == len(set(pred["source"])) and set(pred["patient"]) == set(PATIENTS)
    tiles = pd.read_csv(mil_run / "test_tiles.csv", dtype={"patient": str, "bag": str})
    sums = tiles.groupby("bag")["attention"].sum()
    assert np.allclose(sums, 1, atol=1e-5) and set(sums.index) == set(pred["source"])
    # a bag is positive exactly when it holds an IDC tile
    positive = tiles.groupby("bag")["tile_label"].max()
    assert (pred.set_index("source")["label"].loc[positive.index] == positive).all()
    assert ((tiles["x"] - 1) % 50 == 0).all()  # level-0 positions from the names (x1001, x1051, ...)
    m = json.loads((mil_run / "metrics.json").read_text())
    assert 0 <= m["test/attention_roc_auc_ci_low"] <= m["test/attention_roc_auc"] <= m["test/attention_roc_auc_ci_high"]
    assert m["test/ci_clusters"] == 4 and 0 <= m["test/roc_auc"] <= 1
    assert {f"test_attention_{p}.png" for p in PATIENTS} <= {f.name for f in mil_run.iterdir()}
    # QuPath: each patient's tiles as detections with attention and the tile scores as measurements
    from tests.inference.test_slide_inference import validate_qupath

    doc = json.loads((mil_run / "test_qupath" / "8916.geojson").read_text())
    validate_qupath(doc)
    mine = tiles[tiles["slide"].astype(str) == "8916"]
    assert len(doc["features"]) == len(mine)
    m = doc["features"][0]["properties"]["measurements"]
    assert set(m) == {"attention", "attention_rel", "tile_label", "p_tile_no IDC", "p_tile_IDC"}
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == [float(mine["x"].iloc[0]), float(mine["y"].iloc[0])] and ring[2][0] - ring[0][0] == 50
    # a zoomable viewer of every patient's mosaic, linked from the report; none in the folds
    assert all((mil_run / "test_viewers" / p / "index.html").is_file() for p in PATIENTS)
    assert 'href="test_viewers/8916/index.html"' in (mil_run / "report.html").read_text()
    assert not (mil_run / "folds" / "fold1" / "test_viewers").exists()


def test_a_rerun_repeats_the_numbers_and_reuses_the_cache(mil_run, tree, extractor, tmp_path):
    shutil.copytree(mil_run.parent / "features", tmp_path / "features")
    main_ok("train", "--config", _mil_config(tmp_path, tree, extractor), "--out", tmp_path / "again", *FAST)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (mil_run, tmp_path / "again"))
    assert a["test/roc_auc"] == b["test/roc_auc"] and a["test/attention_roc_auc"] == b["test/attention_roc_auc"]
    seconds = json.loads((tmp_path / "again" / "folds" / "fold1" / "manifest.json").read_text())["seconds"]
    assert seconds["features"] < 5  # read back, not extracted again


def test_evaluate_on_another_patient_tree(mil_run, tree, tmp_path, cli):
    other = tmp_path / "other"
    shutil.copytree(IDC / "9035", other / "9035")
    r = cli("evaluate", mil_run, "--data", other)
    assert r.code == 0, r.err
    m = json.loads((mil_run / "evaluation" / "other.json").read_text())
    pred = pd.read_csv(mil_run / "evaluation" / "other_predictions.csv", dtype={"patient": str})
    assert m["other/n"] == len(pred) > 0 and set(pred["patient"]) == {"9035"} and "set" in pred
    shutil.rmtree(mil_run / "evaluation")


def test_bad_input_is_one_line_and_writes_nothing(tree, extractor, tmp_path, cli):
    # a k-fold extractor needs as many folds
    assert_one_line_error(cli("train", "--config", _mil_config(tmp_path, tree, extractor, folds=3), "--out",
                              tmp_path / "a"), "data.folds", "2-fold run")
    # no window holds enough tiles
    assert_one_line_error(cli("train", "--config", _mil_config(tmp_path, tree, extractor, min_tiles=17), "--out",
                              tmp_path / "b"), "no bag")
    # a patient folder without tiles, and a tile without its position
    bad = tmp_path / "bad"
    shutil.copytree(tree / "8916", bad / "8916")
    (bad / "empty" / "0").mkdir(parents=True)
    assert_one_line_error(cli("train", "--config", _mil_config(tmp_path, bad, extractor), "--out", tmp_path / "c"),
                          "empty", "no tiles")
    shutil.rmtree(bad / "empty")
    shutil.copy(next((bad / "8916" / "0").iterdir()), bad / "8916" / "0" / "scan.png")
    assert_one_line_error(cli("train", "--config", _mil_config(tmp_path, bad, extractor), "--out", tmp_path / "d"),
                          "scan.png", "without its position")
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_a_slide_table_over_a_cache(tmp_path, cli):
    """Whole-slide bags from a cache made elsewhere (random features, one planted tile in each
    positive slide): trained and tested by patient; missing and repeated slides are refused."""
    from biodl.data.features import FeatureCache, Provenance

    rng = np.random.default_rng(0)
    cache = FeatureCache(tmp_path / "cache", Provenance(extractor="test", weights_sha256=["0"], size=8, dim=8))
    signal, lines = rng.normal(size=8), ["slide,label,patient"]
    for i in range(40):
        n = int(rng.integers(10, 30))
        feats = rng.normal(size=(n, 8)).astype(np.float32)
        if i % 2:
            feats[rng.integers(n)] += 4 * signal
        cache.write(f"entry{i}", f"/slides/s{i}.svs", feats, np.stack([np.arange(n) * 8, np.zeros(n)], 1))
        lines.append(f"s{i}.svs,{'tumour' if i % 2 else 'normal'},p{i // 2}")
    table = tmp_path / "slides.csv"
    table.write_text("\n".join(lines) + "\n")
    cfg = {"name": "slides", "task": "mil", "data": {"path": str(table), "features": str(tmp_path / "cache"),
           "bags": "slide", "split": "holdout", "batch_size": 4}, "trainer": {"epochs": 30}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("train", "--config", tmp_path / "s.yaml", "--out", tmp_path / "s", *FAST)
    assert r.code == 0, r.err
    pred = pd.read_csv(tmp_path / "s" / "test_predictions.csv", dtype={"source": str, "patient": str})
    assert len(pred) == 8 and pred["source"].str.fullmatch(r"s\d+\.svs").all()
    assert (pred.groupby("patient")["label"].nunique() == 2).all()  # both slides of a patient in the test part
    tiles = pd.read_csv(tmp_path / "s" / "test_tiles.csv")
    assert np.allclose(tiles.groupby("bag")["attention"].sum(), 1, atol=1e-5)
    table.write_text("\n".join([*lines[:3], lines[2]]) + "\n")
    assert_one_line_error(cli("train", "--config", tmp_path / "s.yaml", "--out", tmp_path / "t"), "s1.svs",
                          "listed 2 times")
    table.write_text("\n".join([*lines[:3], "nowhere.svs,tumour,p9"]) + "\n")
    assert_one_line_error(cli("train", "--config", tmp_path / "s.yaml", "--out", tmp_path / "t"),
                          "not in the feature cache", "nowhere.svs")
    assert not (tmp_path / "t").exists()


def test_predict_new_patients_with_one_folds_run(mil_run, tmp_path, cli):
    other = tmp_path / "other"
    shutil.copytree(IDC / "9035", other / "9035")
    r = cli("predict", mil_run / "folds" / "fold1", other, "--out", tmp_path / "p.csv")
    assert r.code == 0, r.err
    pred = pd.read_csv(tmp_path / "p.csv", dtype={"patient": str})
    test = pd.read_csv(mil_run / "test_predictions.csv", dtype={"patient": str})
    assert len(pred) == (test["patient"] == "9035").sum() and set(pred["patient"]) == {"9035"}
    assert pred["bag"].str.match(r"9035/\d+").all() and np.allclose(pred[["p_no IDC", "p_IDC"]].sum(1), 1)
    assert_one_line_error(cli("predict", mil_run, other, "--out", tmp_path / "q.csv"),
                          "read features of their own extractors")
    assert not (tmp_path / "q.csv").exists()
