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


def test_explain_reads_given_images_as_predict_does(run, cli, tmp_path):
    """Given files are read as ``biodl predict`` reads them (one reader: resized to the run's side,
    a grey image made RGB, the run's stain normalisation): explain's probability of each image is
    predict's (the model's own, raw_p_)."""
    import pandas as pd

    rng = np.random.default_rng(1)
    (tmp_path / "new").mkdir()
    big = rng.integers(0, 80, (20, 20, 3), dtype=np.uint8)
    big[2:9, 2:9] = 250
    Image.fromarray(big).save(tmp_path / "new" / "big.png")
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / "new" / "grey.png")
    files = [tmp_path / "new" / "big.png", tmp_path / "new" / "grey.png"]
    r = cli("explain", run, *files, "--method", "saliency", "--no-sanity")
    assert r.code == 0, r.err
    e = json.loads((run / "explain/explain.json").read_text())
    assert cli("predict", run, tmp_path / "new", "--out", tmp_path / "p.csv").code == 0
    pred = pd.read_csv(tmp_path / "p.csv").set_index("image")
    for f, img in zip(files, e["images"], strict=True):
        assert img["predicted"] == pred.loc[f.name, "predicted"]  # the run's temperature keeps every argmax
        assert img["probability"] == pytest.approx(pred.loc[f.name, f"raw_p_{img['target']}"], abs=1e-5)


def test_explain_bad_inputs_are_one_line_errors_and_write_nothing(run, cli, tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert_one_line_error(cli("explain", run, tmp_path / "broken.png"), "broken.png",
                          "not an image (unidentified format)")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--method", "ig,lime"), "--method", "lime")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--target", "7"), "--target", "out of range")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--target", "tumour"), "--target", "tumour")
    assert_one_line_error(cli("explain", run, "--pick", "tp,xx"), "--pick", "xx")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--baseline", "grey"), "grey")
    assert_one_line_error(cli("explain", run, tmp_path / "ok.png", "--layer", "nope"), "--layer", "nope")
    assert_one_line_error(cli("explain", tmp_path / "nowhere"), "no such run directory")
    assert not (run / "explain").exists() and not list(run.glob(".explain*"))
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


def test_explain_of_a_stain_normalised_run_normalises_the_given_images(cli, tmp_path):
    """A run trained on Macenko-normalised H&E patches sees every image normalised: explain reads a
    given patch as predict does, so its probability is predict's, not the one of the patch's own
    colours."""
    import pandas as pd
    import torch

    import biodl
    from biodl.datasets import embedded_path

    patient = embedded_path("idc") / "8916"
    for label in ("0", "1"):
        (tmp_path / "idc" / label).mkdir(parents=True)
        for f in sorted((patient / label).glob("*.png"))[:24]:
            shutil.copy(f, tmp_path / "idc" / label / f.name)
    r = cli("train", "--data", tmp_path / "idc", "--out", tmp_path / "run", "--epochs", "2", "--set", "data.fit=pad",
            "--set", "data.stain=macenko", "--set", "trainer.progress=false", "--set", "n_boot=100",
            "--set", "model.args={width: 8, blocks: 1}", "--set", f"data.cache_dir={tmp_path / 'cache'}")
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "run/preprocess.json").read_text())["stain"]["method"] == "macenko"
    given = sorted((patient / "1").glob("*.png"))[-3:]  # patches the run never saw
    r = cli("explain", tmp_path / "run", *given, "--method", "saliency", "--no-sanity")
    assert r.code == 0, r.err
    e = json.loads((tmp_path / "run/explain/explain.json").read_text())
    (tmp_path / "new").mkdir()
    for f in given:
        shutil.copy(f, tmp_path / "new" / f.name)
    assert cli("predict", tmp_path / "run", tmp_path / "new", "--out", tmp_path / "p.csv").code == 0
    pred = pd.read_csv(tmp_path / "p.csv").set_index("image")
    p = biodl.load(tmp_path / "run", device="cpu")
    own = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in given])  # the patches' own colours
    with torch.no_grad():
        unnormalised = torch.softmax(p.as_module(recalibrated=False, tta=False)(
            torch.from_numpy(own).permute(0, 3, 1, 2).float() / 255), 1).numpy()
    for f, img, u in zip(given, e["images"], unnormalised, strict=True):
        k = ["0", "1"].index(img["target"])
        assert img["probability"] == pytest.approx(pred.loc[f.name, f"raw_p_{img['target']}"], abs=1e-5)
        assert abs(img["probability"] - u[k]) > 1e-4  # the normalisation changed what the model saw
