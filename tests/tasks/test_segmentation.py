"""The segmentation task end to end (train, predict, evaluate, report) on small generated
fundus-like images, and its bad input."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import assert_one_line_error
from tests.data.test_vessels import _fundus, _save


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "fundus"
    for i in range(4):
        img, mask, _ = _fundus(96, i)
        _save(img, root / f"images/case{i}.png")
        _save((mask * 255).astype(np.uint8), root / f"masks/case{i}.png")
    return root


def _config(tmp_path, root, **data):
    cfg = {"name": "seg", "task": "segmentation",
           "data": {"path": str(root), "test_images": 1, "patch": 32, "patches": 256, "batch_size": 16,
                    "tile": 64, "overlap": 8, **data},
           "model": {"name": "unet", "args": {"width": 8, "depth": 2}}, "optimizer": {"lr": 0.01},
           "trainer": {"epochs": 2, "progress": False}}
    p = tmp_path / "seg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_segmentation_trains_predicts_and_evaluates(folder, tmp_path, cli):
    r = cli("train", "--config", _config(tmp_path, folder), "--out", tmp_path / "run")
    assert r.code == 0, r.err
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["epochs_trained"] == 2 and 0 <= m["threshold_f1_train"] <= 1
    assert 0.5 < m["test/roc_auc"] <= 1 and 0 <= m["test/f1_opt"] <= 1
    per_image = (run / "test_per_image.csv").read_text().splitlines()
    assert per_image[1].startswith("case3,") and per_image[2].startswith("mean,")
    with Image.open(run / "test_case3.png") as im:
        assert im.size == (4 * 480, 480)
    html = (run / "report.html").read_text()
    assert "Vessel segmentation: test results" in html and "Fields of view" in html
    from biodl.data.cache import content_key

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data_content_sha256"] == content_key(sorted(folder.rglob("*.png")), {})
    assert manifest["n_files"] == 8 and manifest["data_content_sha256"] in html
    # a time is no metric: metrics.json holds only what a rerun gives again; the manifest has the times
    assert not [k for k in m if "seconds" in k] and manifest["seconds"]["tiled_inference"] >= 0
    r = cli("predict", run, folder / "images/case3.png", "--out", tmp_path / "pred")
    assert r.code == 0, r.err
    for kind in ("prob", "mask"):
        with Image.open(tmp_path / f"pred/case3_{kind}.png") as im:
            assert im.size == (96, 96) and im.mode == "L"
    mask = np.asarray(Image.open(tmp_path / "pred/case3_mask.png"))
    assert set(np.unique(mask)) <= {0, 255}
    r = cli("evaluate", run)
    assert r.code == 0, r.err
    ev = json.loads((run / "evaluation/test.json").read_text())
    assert ev["test/roc_auc"] == pytest.approx(m["test/roc_auc"], abs=1e-9)
    # issue 12: an --out of the wrong kind, and a run's own files checked when read back
    (tmp_path / "afile").write_text("x")
    r = cli("predict", run, folder / "images/case3.png", "--out", tmp_path / "afile", "--overwrite")
    assert_one_line_error(r, "afile", "is a file; --out takes a folder")
    assert (tmp_path / "afile").read_text() == "x"
    assert_one_line_error(cli("explain", run), "biodl explain does not support segmentation runs")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "threshold_f1_train": 7}))
    assert_one_line_error(cli("predict", run, folder / "images/case3.png", "--out", tmp_path / "p2"),
                          "metrics.json", "threshold_f1_train: 7.0 is not a probability")
    (run / "metrics.json").write_text(json.dumps(metrics))
    pre = json.loads((run / "preprocess.json").read_text())
    (run / "preprocess.json").write_text(json.dumps({**pre, "channels": "blue"}))
    assert_one_line_error(cli("evaluate", run, "--overwrite"), "preprocess.json", "channels")


def test_tta_predicts_the_mean_of_the_four_flips_in_the_report_and_the_predictor(folder, tmp_path, cli):
    """model.tta: a loaded run's maps average the 4 flips of each tile (flipped back), and the run's
    own test report used the same maps (evaluate gives its AUC again)."""
    import torch

    import biodl
    from biodl.data.vessels import prepare_fundus

    r = cli("train", "--config", _config(tmp_path, folder), "--out", tmp_path / "run", "--set", "model.tta=true",
            "--set", "trainer.epochs=1")
    assert r.code == 0, r.err
    predictor = biodl.load(tmp_path / "run", device="cpu")
    image = np.asarray(Image.open(folder / "images/case3.png").convert("RGB"))
    x = torch.from_numpy(prepare_fundus(image, "green", True))
    inferer = predictor.members[0].inferer
    with_tta = predictor.predict_proba(image)[0]
    np.testing.assert_allclose(with_tta, inferer.tiled(x, 64, 8)[0].numpy(), atol=1e-6)
    inferer.eval_forward = lambda m, v: m(v)
    # 96 px in 64 px tiles at 56 px steps: tiles at 0 and 32, a grid that every flip maps onto itself
    flips = [inferer.tiled(x.flip(d), 64, 8).flip(d) if d else inferer.tiled(x, 64, 8) for d in ((), (-1,), (-2,),
                                                                                                  (-2, -1))]
    np.testing.assert_allclose(with_tta, (sum(flips) / 4)[0].numpy(), atol=1e-5)
    assert np.abs(with_tta - flips[0][0].numpy()).max() > 1e-4  # the flips do change the map
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    assert cli("evaluate", tmp_path / "run").code == 0
    assert json.loads((tmp_path / "run/evaluation/test.json").read_text())["test/roc_auc"] == pytest.approx(
        m["test/roc_auc"], abs=1e-9)


def test_bad_masks_are_one_line_errors(folder, tmp_path, cli):
    cfg = _config(tmp_path, folder)
    _save(np.zeros((90, 96), np.uint8), folder / "masks/case1.png")
    assert_one_line_error(cli("train", "--config", cfg, "--out", tmp_path / "a"), "case1.png", "96x90", "96x96")
    _save(np.arange(96 * 96, dtype=np.uint8).reshape(96, 96) % 3 * 100, folder / "masks/case1.png")
    assert_one_line_error(cli("train", "--config", cfg, "--out", tmp_path / "b"), "case1.png", "not binary")
    (folder / "masks/case1.png").unlink()
    assert_one_line_error(cli("train", "--config", cfg, "--out", tmp_path / "c"), "case1.png", "no vessel mask")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_test_means_get_cis_that_resample_patients_not_eyes(monkeypatch):
    """CHASE_DB1's Image_NNL and Image_NNR are one child's two eyes: the CI of a test mean
    resamples children (3 here), so two eyes that score alike do not count as two patients."""
    from types import SimpleNamespace

    from biodl.data.vessels import VesselCase
    from biodl.tasks import segmentation_report

    rng = np.random.default_rng(0)
    cases, maps = [], {}
    for child, noise in ((1, 0.1), (2, 0.35), (3, 0.6)):
        img, mask, disc = _fundus(64, child)
        m = np.clip(mask + rng.normal(0, noise, mask.shape), 0, 1)  # worse maps for later children
        for eye in "LR":
            cases.append(VesselCase(f"Image_{child:02d}{eye}", img, mask, disc, False))
            maps[f"Image_{child:02d}{eye}"] = m
    monkeypatch.setattr(segmentation_report, "predict_map", lambda trainer, x, tile, overlap: maps[x])
    config = SimpleNamespace(data=SimpleNamespace(tile=64, overlap=8), n_boot=400)
    table, m, _ = segmentation_report.case_metrics(None, config, cases, 0.5, "test", {c.name: c.name for c in cases})
    assert m["test/ci_clusters"] == 3
    per_child = table.groupby(table["image"].str[:8])["f1_opt"].mean()
    assert per_child.is_monotonic_decreasing and m["test/f1_opt"] == pytest.approx(per_child.mean())
    assert per_child.min() <= m["test/f1_opt_ci_low"] < m["test/f1_opt"] < m["test/f1_opt_ci_high"] <= per_child.max()
    renamed = [VesselCase(f"case{i}", c.image, c.mask, c.fov, False) for i, c in enumerate(cases)]
    maps.update({f"case{i}": maps[c.name] for i, c in enumerate(cases)})
    _, m6, _ = segmentation_report.case_metrics(None, config, renamed, 0.5, "test", {c.name: c.name for c in renamed})
    assert m6["test/ci_clusters"] == 6 and m6["test/f1_opt"] == pytest.approx(m["test/f1_opt"])


def test_a_test_split_that_parts_a_childs_eyes_is_refused(tmp_path, cli, monkeypatch):
    """From the file names, before any image is read."""
    from biodl.tasks import segmentation

    monkeypatch.setattr(segmentation, "read_cases", lambda files: pytest.fail("an image was read"))
    cfg = {"name": "seg", "task": "segmentation", "data": {"dataset": "chase_db1", "test_images": 7},
           "trainer": {"epochs": 1, "progress": False}}
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = cli("train", "--config", path, "--out", tmp_path / "run")
    assert_one_line_error(r, "data.test_images", "child 11", "Image_11L, Image_11R")  # the last 7 of 28
    assert not (tmp_path / "run").exists()


def test_vessel_fraction_centres_that_share_of_patches_on_vessels():
    """vessel_fraction 1: every patch centred on a vessel pixel of the FOV; 0: the uniform draw,
    unchanged (the same patches as without the argument)."""
    import numpy as np

    from biodl.tasks.segmentation import draw_patches

    rng = np.random.default_rng(0)
    image = rng.random((1, 40, 40))
    mask = np.zeros((40, 40), np.uint8)
    mask[20, 5:35] = 1  # one thin horizontal vessel: 2.5% of the FOV
    fov = np.ones((40, 40), bool)
    fov[:, :3] = False
    _, ys = draw_patches([image], [mask], [fov], 200, 16, seed=1, augment=False, vessel_fraction=1.0)
    assert (ys[:, 0, 8, 8] == 1).all()
    x0, y0 = draw_patches([image], [mask], [fov], 200, 16, seed=1, augment=True)
    x1, y1 = draw_patches([image], [mask], [fov], 200, 16, seed=1, augment=True, vessel_fraction=0.0)
    assert (x0 == x1).all() and (y0 == y1).all()
    assert 0 < (y0[:, 0, 8, 8] == 1).float().mean() < 0.15
    _, half = draw_patches([image], [mask], [fov], 400, 16, seed=2, augment=False, vessel_fraction=0.5)
    assert 0.4 < (half[:, 0, 8, 8] == 1).float().mean() < 0.65
