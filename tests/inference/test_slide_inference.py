"""biodl wsi infer: a (tiny) patch classifier over the embedded slide's tissue tiles."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biodl import runs
from biodl.datasets import embedded_path
from tests.conftest import assert_one_line_error, main_ok
from tests.tasks.test_image import FAST, _folder

SLIDE = embedded_path("cmu1-small-region")


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wsi")
    _folder(tmp / "data", n=40, size=32)
    main_ok("train", "--data", tmp / "data", "--out", tmp / "run", *FAST, "--set", f"data.cache_dir={tmp / 'c'}",
            "--set", "data.mpp=2.0")
    return tmp / "run"


def test_infer_writes_a_heat_map_on_the_tile_grid(patch_run, cli, tmp_path):
    r = cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "out", "--tile-mpp", "2.0")
    assert r.code == 0, r.err
    assert r.out.strip() and all(line.strip() for line in r.out.splitlines())  # no bar's blank line left behind
    folder = tmp_path / "out" / SLIDE.stem
    tiles = pd.read_csv(folder / "tiles.csv")
    grid = np.load(folder / "heatmap.npy")
    step0 = 32 * 2.0 / 0.499  # a 32 px tile at 2 um/px, in level-0 pixels
    rows, cols = np.round(tiles["y"] / step0).astype(int), np.round(tiles["x"] / step0).astype(int)
    np.testing.assert_allclose(grid[rows, cols], tiles["p_square"], atol=1e-6)  # each tile in its own cell
    assert np.isnan(grid).sum() == grid.size - len(tiles)  # and nothing else painted
    assert grid.shape == (int(2967 // step0), int(2220 // step0))
    np.testing.assert_allclose(tiles[["p_plain", "p_square"]].sum(axis=1), 1, atol=1e-5)
    scores = json.loads((folder / "slide.json").read_text())
    assert scores["tiles"] == len(tiles) > 0 and scores["positive_class"] == "square"
    assert scores["mean"] == pytest.approx(tiles["p_square"].mean(), abs=1e-6)
    top = np.sort(tiles["p_square"].to_numpy())[::-1][:10].mean()
    assert scores["top10_mean"] == pytest.approx(top, abs=1e-6)
    with Image.open(folder / "heatmap.png") as im:
        assert im.size == (383, 512)
    # the report: scores, heat map, mask, the eight tiles rated highest with their coordinates
    report = (folder / "report.html").read_text()
    assert report.count("<img") == 2 + 8 and f"{scores['mean']:.3f}" in report
    best = tiles.sort_values("p_square", ascending=False, kind="stable").iloc[0]
    assert f"x {int(best['x'])}, y {int(best['y'])}: P = {best['p_square']:.3f}" in report
    cohort = pd.read_csv(tmp_path / "out" / "slides.csv")
    assert cohort["slide"].tolist() == [str(SLIDE)] and cohort["mean"].iat[0] == pytest.approx(scores["mean"])
    assert f'href="{SLIDE.stem}/report.html"' in (tmp_path / "out" / "index.html").read_text()
    r = cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "out", "--tile-mpp", "2.0")
    assert r.code == 0 and "skipped" in r.out


def test_infer_tiles_at_the_resolution_the_run_records(patch_run, cli, tmp_path):
    import shutil

    assert json.loads((patch_run / "preprocess.json").read_text())["mpp"] == 2.0  # from data.mpp
    assert cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "o").code == 0
    assert cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "o2", "--tile-mpp", "2.0").code == 0
    same = (tmp_path / "o" / SLIDE.stem / "tiles.csv").read_text()
    assert same == (tmp_path / "o2" / SLIDE.stem / "tiles.csv").read_text()
    run = tmp_path / "run"
    shutil.copytree(patch_run, run)
    pre = json.loads((run / "preprocess.json").read_text())
    (run / "preprocess.json").write_text(json.dumps({**pre, "mpp": None}))  # a run trained without data.mpp
    assert_one_line_error(cli("wsi", "infer", run, SLIDE, "--out", tmp_path / "o3"), "data.mpp", "--tile-mpp")


def test_infer_bad_input_is_one_line(patch_run, cli, tmp_path):
    assert_one_line_error(cli("wsi", "infer", tmp_path / "nope", SLIDE, "--out", tmp_path / "o", "--tile-mpp", "2"),
                          "nope")
    (tmp_path / "fake.svs").write_bytes(b"not a slide")
    r = cli("wsi", "infer", patch_run, tmp_path / "fake.svs", "--out", tmp_path / "o", "--tile-mpp", "2")
    assert_one_line_error(r, "fake.svs", "not a slide")
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_infer_scores_with_the_runs_recalibration_as_predict_does(patch_run, cli, tmp_path):
    import shutil

    cal = runs.read_calibration(patch_run)  # training fits a temperature on the validation split by default
    assert cal is not None and abs(cal.temperature - 1) > 1e-3  # a map that moves the probabilities
    assert cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "cal").code == 0
    folder = tmp_path / "cal" / SLIDE.stem
    tiles = pd.read_csv(folder / "tiles.csv")
    expected = cal.apply(tiles[["raw_p_plain", "raw_p_square"]].to_numpy())
    assert np.abs(expected - tiles[["raw_p_plain", "raw_p_square"]].to_numpy()).max() > 1e-3  # the map matters
    np.testing.assert_allclose(tiles[["p_plain", "p_square"]], expected, atol=3e-5)  # from 6-decimal raw_p
    np.testing.assert_array_equal(tiles["predicted"] == "square", expected[:, 1] > expected[:, 0])
    scores = json.loads((folder / "slide.json").read_text())
    assert scores["recalibrated"] is True and scores["mean"] == pytest.approx(tiles["p_square"].mean(), abs=1e-6)
    assert np.nanmean(np.load(folder / "heatmap.npy")) == pytest.approx(tiles["p_square"].mean(), abs=1e-6)
    assert "probabilities</th><td>recalibrated" in (folder / "report.html").read_text()

    run = tmp_path / "run"  # the same run without its recalibration: the model's own probabilities
    shutil.copytree(patch_run, run)
    (run / "calibration.json").unlink()
    assert cli("wsi", "infer", run, SLIDE, "--out", tmp_path / "raw").code == 0
    raw = pd.read_csv(tmp_path / "raw" / SLIDE.stem / "tiles.csv")
    np.testing.assert_array_equal(raw["raw_p_square"], raw["p_square"])  # one vocabulary: raw_p_ always there
    np.testing.assert_allclose(raw[["p_plain", "p_square"]], tiles[["raw_p_plain", "raw_p_square"]], atol=1e-6)
    assert json.loads((tmp_path / "raw" / SLIDE.stem / "slide.json").read_text())["recalibrated"] is False


def test_infer_over_several_slides_reads_the_run_once(patch_run, cli, tmp_path, monkeypatch):
    """The run is loaded once per command, not once per slide: its weights file is read once."""
    import shutil

    from biodl.engine import checkpoint

    reads = []
    read = checkpoint.read_safetensors
    monkeypatch.setattr(checkpoint, "read_safetensors", lambda path: reads.append(path) or read(path))
    slides = []
    for name in ("a", "b", "c"):
        slides.append(tmp_path / f"{name}.svs")
        shutil.copy(SLIDE, slides[-1])
    r = cli("wsi", "infer", patch_run, *slides, "--out", tmp_path / "out", "--tile-mpp", "4.0")
    assert r.code == 0, r.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c", "index.html", "slides.csv"]
    assert reads == [patch_run / "checkpoints" / "best.safetensors"]


def test_a_stray_or_damaged_slide_json_is_found_before_any_slide_is_scored(patch_run, cli, tmp_path):
    out = tmp_path / "out"
    (out / "stray").mkdir(parents=True)
    (out / "stray" / "slide.json").write_text('{"note": "not a slide result"}')
    r = cli("wsi", "infer", patch_run, SLIDE, "--out", out, "--tile-mpp", "2.0")
    assert_one_line_error(r, "stray/slide.json", "not a slide result of biodl wsi infer")
    assert sorted(p.name for p in out.iterdir()) == ["stray"]  # nothing scored, no slides.csv written
    (out / "stray" / "slide.json").write_text('{"slide": "x", "tiles": 3, "positive_class": "1", "mean": NaN}')
    assert_one_line_error(cli("wsi", "infer", patch_run, SLIDE, "--out", out, "--tile-mpp", "2.0"), "not valid JSON")


def test_infer_on_a_tabular_run_or_with_other_settings_in_the_folder(patch_run, trained_run, cli, tmp_path):
    r = cli("wsi", "infer", trained_run, SLIDE, "--out", tmp_path / "o", "--tile-mpp", "2.0")
    assert_one_line_error(r, "runs a patch classifier (an image run)", "this is a tabular run")
    assert cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "o", "--tile-mpp", "2.0").code == 0
    r = cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "o", "--tile-mpp", "4.0")
    assert_one_line_error(r, "was made with other settings")
    r = cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "o", "--tile-mpp", "2.0")
    assert r.code == 0 and "done before, skipped" in r.out
    r = cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "o", "--tile-mpp", "2.0", "--shard", "1/2")
    assert r.code == 0 and "holds none of the 1 slides given" in r.out


def validate_qupath(doc: dict) -> None:
    """``doc`` against the JSON schema of what QuPath imports (tests/report/qupath_geojson.schema.json)."""
    import json
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[1] / "report" / "qupath_geojson.schema.json").read_text())
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):  # the schema can fail: an open ring, a text measurement
        jsonschema.validate({"type": "FeatureCollection", "features": [{**doc["features"][0], "properties": {
            "objectType": "detection", "measurements": {"p": "high"}}}]}, schema)


def test_the_tiles_go_to_qupath_as_detections(patch_run, cli, tmp_path):
    import json

    r = cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "out", "--tile-mpp", "2.0")
    assert r.code == 0, r.err
    folder = tmp_path / "out" / SLIDE.stem
    tiles = pd.read_csv(folder / "tiles.csv", keep_default_na=False)
    doc = json.loads((folder / "tiles.geojson").read_text())
    validate_qupath(doc)
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(tiles)
    step0 = 32 * 2.0 / 0.499  # the tile's side in level-0 pixels
    for feature, row in zip(doc["features"], tiles.itertuples(), strict=True):
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        assert ring.shape == (5, 2) and (ring[0] == ring[-1]).all()  # a closed ring, as GeoJSON needs
        assert ring[0].tolist() == [row.x, row.y] and np.allclose(ring[2] - ring[0], step0, atol=1)
        props = feature["properties"]
        assert props["objectType"] == "detection" and props["classification"]["name"] == str(row.predicted)
        assert len(props["classification"]["color"]) == 3
        m = props["measurements"]
        assert all(isinstance(v, float) and np.isfinite(v) for v in m.values())
        assert m[[k for k in m if k.startswith("p_")][0]] == pytest.approx(getattr(row, [k for k in m if
                                                                                         k.startswith("p_")][0]))


def test_infer_with_a_viewer_links_it_from_the_slide_report(patch_run, cli, tmp_path):
    import json
    import re

    r = cli("wsi", "infer", patch_run, SLIDE, "--out", tmp_path / "out", "--tile-mpp", "2.0", "--viewer")
    assert r.code == 0, r.err
    folder = tmp_path / "out" / SLIDE.stem
    page = (folder / "viewer" / "index.html").read_text()
    config = json.loads(re.search(r"const C = (.*);", page).group(1))
    tiles = pd.read_csv(folder / "tiles.csv", keep_default_na=False)
    assert len(config["heat"]["cells"]) == len(tiles)
    assert config["heat"]["side"] == pytest.approx(32 * 2.0 / 0.499, abs=0.5)  # not a whole number of pixels
    assert 'href="viewer/index.html"' in (folder / "report.html").read_text()
