"""report.html, TensorBoard extras and `biodl report` on real (small) runs."""

import base64
import io
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from biodl.report.html import CSP
from tests.conftest import assert_one_line_error, train_square_run

EVIL = "<script>alert(1)"
ODD = "b&\"q' $x$"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A short image run whose class folders are named with HTML (and a $ for matplotlib)."""
    return train_square_run(tmp_path_factory.mktemp("report"), (ODD, EVIL))


def _images(html: str) -> list[Image.Image]:
    out = []
    for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        im.load()
        out.append(im)
    return out


def test_image_report_is_self_contained_and_escapes_class_names(image_run):
    html = (image_run / "report.html").read_text()
    # every user string escaped: the folder names never reach the page as markup
    assert EVIL not in html and "&lt;script&gt;alert(1)" in html
    assert ODD not in html and "b&amp;&quot;q&#x27; $x$" in html
    assert "<script" not in html.lower()
    # self-contained: no scripts, no fetches (CSP), every image inline
    assert f'content="{CSP}"' in html
    assert not re.search(r'(src|href)="(?!data:|#|model_card\.md")', html)  # the one link: the card beside it
    images = _images(html)
    # curves, per-class ROC/PR, confusion, calibration before and after recalibration, referral, examples
    assert len(images) == 7 and all(im.format == "PNG" and im.width > 300 for im in images)
    for section in ("Summary", "Training", "Metrics", "Per class", "Confusion matrix", "Calibration",
                    "Trust: calibration, prediction sets and referral", "Examples", "TensorBoard", "Manifest"):
        assert f"<h2>{section}</h2>" in html, section
    metrics = json.loads((image_run / "metrics.json").read_text())
    assert f"{metrics['test/accuracy']:.3f}" in html
    assert f"[{metrics['test/accuracy_ci_low']:.3f}, {metrics['test/accuracy_ci_high']:.3f}]" in html
    manifest = json.loads((image_run / "manifest.json").read_text())
    assert manifest["data_content_sha256"] in html and len(manifest["data_content_sha256"]) == 64


def test_predictions_file_matches_the_metrics(image_run):
    pred = pd.read_csv(image_run / "test_predictions.csv", keep_default_na=False)
    metrics = json.loads((image_run / "metrics.json").read_text())
    manifest = json.loads((image_run / "manifest.json").read_text())
    classes = manifest["classes"]
    assert list(pred.columns) == ["row", "source", "label", "true", "predicted", *[f"p_{c}" for c in classes],
                                  "entropy", "set"]
    assert all((image_run.parent / "data" / s).is_file() for s in pred["source"])  # traceable to its file
    assert len(pred) == manifest["split_sizes"]["test"]
    prob = pred[[f"p_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(prob.sum(axis=1), 1, atol=1e-6)
    acc = float((prob.argmax(axis=1) == pred["label"]).mean())
    assert acc == pytest.approx(metrics["test/accuracy"], abs=1e-6)
    from biodl.evaluation import calibration_bins

    assert calibration_bins(pred["label"].to_numpy(), prob)[1] == pytest.approx(metrics["test/ece"], abs=1e-6)
    cm = pd.read_csv(image_run / "test_confusion.csv", keep_default_na=False)
    assert cm.iloc[:, 1:].to_numpy().sum() == len(pred)
    assert list(cm["true"]) == classes


def test_tensorboard_holds_images_graph_pr_curves_and_projector(image_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(image_run / "tb"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "train/images" in tags["images"]
    grid = acc.Images("train/images")[-1]
    assert grid.width > 16 * 6 and grid.height > 16 * 6  # 8 x 8 grid of 16 px images
    assert tags["graph"] is True
    pr = [t for t in tags["tensors"] if t.startswith("test_pr/")]
    assert sorted(pr) == ["test_pr/0_script_alert_1", "test_pr/1_b_q_x"]
    assert "val/loss" in tags["scalars"] and len(acc.Scalars("val/loss")) == 3
    config = (image_run / "tb" / "projector_config.pbtxt").read_text()
    meta_path = re.search(r'metadata_path: "([^"]+)"', config).group(1)
    meta = (image_run / "tb" / meta_path).read_text().splitlines()
    n_test = json.loads((image_run / "manifest.json").read_text())["split_sizes"]["test"]
    assert meta[0] == "true\tpredicted\tcorrect" and len(meta) == n_test + 1
    assert {row.split("\t")[0] for row in meta[1:]} == {EVIL, ODD}
    sprite = re.search(r'image_path: "([^"]+)"', config).group(1)
    with Image.open(image_run / "tb" / sprite) as im:
        assert im.width >= 16 * int(np.ceil(np.sqrt(n_test)))
    tensors = (image_run / "tb" / re.search(r'tensor_path: "([^"]+)"', config).group(1)).read_text().splitlines()
    from biodl.models import create_model
    from biodl.report.tensorboard import last_linear

    head = last_linear(create_model("resnet_small", num_classes=2, in_chans=3, width=8, blocks=1))
    assert len(tensors) == n_test and len(tensors[0].split("\t")) == head.in_features


def test_report_command_rebuilds_from_saved_files(image_run, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(image_run, run)
    for name in ("report.html", "training_curves.png", "test_confusion.png", "test_calibration.png",
                 "test_calibration_after.png", "test_referral.png"):
        (run / name).unlink()
    r = cli("report", run)
    assert r.code == 0, r.err
    assert (run / "report.html").read_text().count("data:image/png;base64,") == 7
    (run / "explain").mkdir()  # what `biodl explain` leaves: shown under Examples
    shutil.copyfile(run / "test_curves.png", run / "explain" / "ig_grid.png")
    assert cli("report", run).code == 0
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 8 and "<h3>Attributions</h3>" in html
    for name in ("training_curves.png", "test_confusion.png", "test_calibration.png", "test_calibration_after.png",
                 "test_referral.png"):
        with Image.open(run / name) as im:
            assert im.format == "PNG"


def test_report_bad_inputs_are_one_line_errors_and_keep_the_old_report(image_run, tmp_path, cli):
    assert_one_line_error(cli("report", tmp_path / "missing"), "no such run directory")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("report", tmp_path / "empty"), "no manifest.json")
    run = tmp_path / "run"
    shutil.copytree(image_run, run)
    before = (run / "report.html").read_bytes()
    (run / "test_predictions.csv").write_text("row,label,true,predicted,p_a,p_b\n0,7,a,a,0.5,0.5\n")
    assert_one_line_error(cli("report", run), "test_predictions.csv", "not a predictions file")
    (run / "test_predictions.csv").write_bytes(b"\x00\xff garbage")
    assert_one_line_error(cli("report", run), "test_predictions.csv")
    (run / "test_predictions.csv").unlink()
    (run / "manifest.json").write_text("{not json")
    assert_one_line_error(cli("report", run), "manifest.json")
    assert (run / "report.html").read_bytes() == before


def test_tabular_run_report_has_ci_and_calibration(trained_run):
    html = (trained_run / "report.html").read_text()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for key in ("mcc", "roc_auc", "f1"):
        assert f"[{metrics[f'test/{key}_ci_low']:.3f}, {metrics[f'test/{key}_ci_high']:.3f}]" in html
    assert metrics["test/mcc_ci_low"] <= metrics["test/mcc"] <= metrics["test/mcc_ci_high"]
    assert "DEATH_EVENT=1" in html and "<h2>Calibration</h2>" in html
    assert len(_images(html)) == 6  # curves, per-class ROC/PR, confusion, calibration before and after, referral


def test_study_report_follows_its_layout(tmp_path, cli):
    r = cli("run", "heart-failure", "--out", tmp_path / "hf", "--set", "n_splits=3", "--set", "n_boot=100",
            "--set", "permutation_repeats=1", "--set", "net_epochs=2", "--set", "progress=false", "--set", "n_jobs=1")
    assert r.code == 0, r.err
    html = (tmp_path / "hf" / "report.html").read_text()
    layout = json.loads((tmp_path / "hf" / "report.json").read_text())
    heads = re.findall(r"<h2>([^<]+)</h2>", html)
    assert heads == ["Summary", *[s["title"] for s in layout["sections"]], "Manifest"]
    # roc/pr, 2 borda bars, 2 importance box plots, distributions; calibration when the best method
    # (by MCC) gives probabilities
    calibrated = (tmp_path / "hf" / "calibration_best.png").is_file()
    assert len(_images(html)) == 6 + calibrated
    assert "<h3>Table 4" in html and "Chicco" in html
    assert "survived (0)" in html and "died (1)" in html


def test_reports_open_in_headless_chromium(image_run, trained_run, tmp_path):
    """Every figure decodes and is laid out, the console stays empty, nothing is fetched, the
    planted <script> is shown as text; a full-page screenshot is saved (BIODL_SCREENSHOTS=DIR
    keeps them)."""
    import os
    from pathlib import Path

    pytest.importorskip("playwright", reason="pip install 'biodl[browser]'")
    from biodl.errors import BiodlError
    from biodl.report.browser import check_page, chromium_path

    try:
        chromium_path()
    except BiodlError as exc:
        pytest.skip(str(exc))
    shots = Path(os.environ.get("BIODL_SCREENSHOTS") or tmp_path)
    for name, run, n_images in (("image", image_run, 7), ("tabular", trained_run, 6)):
        shot = shots / f"report_{name}.png"
        check = check_page(run / "report.html", shot)
        assert len(check.images) == n_images and check.broken == [], check.images
        assert all(i["width"] > 300 and i["shown"] > 100 for i in check.images)
        assert check.console == [] and check.requests == [] and check.scripts == 0
        assert check.title.endswith(f": {run.name}")
        with Image.open(shot) as im:
            assert im.format == "PNG" and im.width == 1280 and im.height > 2500
    assert EVIL in check_page(image_run / "report.html").text  # shown as text, not run


@pytest.mark.parametrize("link", ["leak.md", "explain/grid.png", "test_calibration.md", "figures_dir"])
def test_a_link_out_of_the_run_folder_is_refused_not_embedded(run_copy, tmp_path, cli, link):
    """A received run with ``leak.md -> /etc/passwd`` (and the item in report.json) would have
    put that file into report.html; any link that leaves the folder is refused."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:x:0:0:SECRET\n")
    before = (run_copy / "report.html").read_bytes()
    target = run_copy / link
    target.parent.mkdir(exist_ok=True)
    target.unlink(missing_ok=True)
    target.symlink_to(secret if link == "figures_dir" else secret / "passwd")
    (run_copy / "report.json").write_text(json.dumps({"sections": [{"title": "x", "items": ["leak.md"]}]}))
    assert_one_line_error(cli("report", run_copy), link, "outside the run folder")
    assert (run_copy / "report.html").read_bytes() == before and "SECRET" not in before.decode()


def test_a_link_inside_the_run_folder_is_read(run_copy, cli):
    (run_copy / "notes.md").write_text("kept inside\n")
    (run_copy / "leak.md").symlink_to(run_copy / "notes.md")
    (run_copy / "report.json").write_text(json.dumps({"sections": [{"title": "x", "items": ["leak.md"]}]}))
    assert cli("report", run_copy).code == 0
    assert "kept inside" in (run_copy / "report.html").read_text()
