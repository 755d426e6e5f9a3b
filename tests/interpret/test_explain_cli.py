"""`biodl explain` end to end on a small image run and on the tabular run."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import HEART, assert_one_line_error, train_square_run

@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    return train_square_run(tmp_path_factory.mktemp("explain"), ("plain", "square"))


@pytest.fixture
def run(image_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(image_run, dst)
    return dst


def test_explain_picks_test_images_and_writes_figures_and_numbers(run, cli):
    r = cli("explain", run, "--method", "ig,gradcam,occlusion", "--pick", "tp,tn,fp,fn", "--n", "2")
    assert r.code == 0, r.err
    out = run / "explain"
    e = json.loads((out / "explain.json").read_text())
    assert e["methods"] == ["ig", "gradcam", "occlusion"] and 1 <= len(e["images"]) <= 8
    assert {i["outcome"] for i in e["images"]} <= {"tp", "tn", "fp", "fn"}
    for img in e["images"]:
        assert img["target"] == img["predicted"]  # --target predicted
        for meth, m in img["methods"].items():
            with Image.open(out / m["png"]) as im:
                im.load()
                # image | heat | blend, each 16 px scaled 14x to 224
                assert im.format == "PNG" and im.size == (3 * 224, 224) == tuple(m["png_size"]), meth
            assert 0 <= m["deletion_auc"] <= 1 and 0 <= m["insertion_auc"] <= 1
        assert img["methods"]["ig"]["convergence_delta"] >= 0
    assert set(e["sanity_check"]) == {"ig", "gradcam", "occlusion"}
    assert all(len(s["steps"]) >= 2 for s in e["sanity_check"].values())
    for name in ("grid.png", "filters.png", "activations.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 200
    assert e["activations"]["layer"] == e["images"][0]["methods"]["gradcam"]["layer"]
    html = (run / "report.html").read_text()
    # the run report, then grid, similar cases, feature map, filters, activations
    assert "<h3>Attributions</h3>" in html and html.count("data:image/png;base64,") == 7 + 5


def test_explain_given_images_and_a_class_name_target(run, cli, tmp_path):
    img = np.zeros((16, 16, 3), np.uint8)
    img[2:7, 2:7] = 250
    Image.fromarray(img).save(tmp_path / "a.png")
    r = cli("explain", run, tmp_path / "a.png", "--method", "saliency,superpixels", "--target", "plain",
            "--baseline", "blurred", "--no-sanity")
    assert r.code == 0, r.err
    e = json.loads((run / "explain/explain.json").read_text())
    assert [i["source"] for i in e["images"]] == [str(tmp_path / "a.png")]
    assert e["images"][0]["target"] == "plain" and e["sanity_check"] == {}
    # a second run refuses to replace the first without --overwrite, and replaces it with it
    assert_one_line_error(cli("explain", run, tmp_path / "a.png"), "explain", "--overwrite")
    assert cli("explain", run, tmp_path / "a.png", "--method", "ig", "--overwrite", "--no-sanity").code == 0
    assert sorted(p.name for p in (run / "explain").glob("000_*.png")) == ["000_ig.png"]


def test_explain_bad_inputs_are_one_line_errors_and_write_nothing(run, cli, tmp_path):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert_one_line_error(cli("explain", run, tmp_path / "big.png"), "big.png", "20x20", "16x16")
    assert_one_line_error(cli("explain", run, tmp_path / "grey.png"), "grey.png", "1 channel", "takes 3")
    assert_one_line_error(cli("explain", run, tmp_path / "broken.png"), "broken.png",
                          "not an image (unidentified format)")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--method", "ig,lime"), "--method", "lime")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--target", "7"), "--target", "out of range")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--target", "tumour"), "--target", "tumour")
    assert_one_line_error(cli("explain", run, "--pick", "tp,xx"), "--pick", "xx")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--baseline", "grey"), "grey")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--layer", "nope"), "--layer", "nope")
    assert_one_line_error(cli("explain", tmp_path / "nowhere"), "no such run directory")
    assert not (run / "explain").exists() and not list(run.glob(".explain-*"))
    shutil.rmtree(run / "checkpoints")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png"), "no model checkpoint")
    assert not (run / "explain").exists()


def test_explain_tabular_run_gives_feature_importance(run_copy, cli):
    r = cli("explain", run_copy)
    assert r.code == 0, r.err
    e = json.loads((run_copy / "explain/explain.json").read_text())
    feats = e["features"]
    assert len(feats) == 11 and "time" not in feats and e["rows"] == 60
    assert set(e["permutation_importance_auc_drop"]) == set(feats) == set(e["ig_mean_abs"])
    assert all(v >= 0 for v in e["ig_mean_abs"].values())
    # completeness of IG over 50 steps on an MLP: small delta
    assert e["ig_convergence_delta_max"] < 0.05
    with Image.open(run_copy / "explain/tabular_importance.png") as im:
        assert im.format == "PNG" and im.width > 800
    assert "tabular importance" in (run_copy / "report.html").read_text()


def test_explain_tabular_refuses_data_changed_since_training(run_copy, cli, tmp_path):
    """The test rows are the split of the data the run was trained on: a table that has changed
    since (one value edited) would give other rows, so it is refused, as evaluate refuses it."""
    import yaml

    lines = HEART.read_text().splitlines()
    lines[1] = lines[1].replace(",", ",1", 1)
    edited = tmp_path / "heart_edited.csv"
    edited.write_text("\n".join(lines) + "\n")
    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    config["data"].update(dataset=None, path=str(edited))
    (run_copy / "config.yaml").write_text(yaml.safe_dump(config))
    assert_one_line_error(cli("explain", run_copy), "heart_edited.csv", "has changed since the run was trained")
    assert not (run_copy / "explain").exists()
