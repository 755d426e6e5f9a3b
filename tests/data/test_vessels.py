"""Vessel segmentation: layouts, FOV, tiling, FOV-only metrics, and the task end to end on
small generated fundus-like images."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from biodl.data.vessels import derive_fov, load_chase, load_drive
from biodl.engine.tiling import tiled_predict
from biodl.metrics import f1_optimal_threshold as f1_threshold
from biodl.metrics import fov_scores as scores
from tests.conftest import assert_one_line_error


def _fundus(size=96, seed=0):
    """A dark frame around a bright disc (the FOV) with a few dark lines (vessels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = np.hypot(yy - size / 2, xx - size / 2) < size * 0.42
    img = np.zeros((size, size, 3), np.uint8)
    img[disc] = (170, 90, 40)
    mask = np.zeros((size, size), bool)
    for _ in range(4):
        r = rng.integers(10, size - 10)
        mask[r:r + 2, :] = True
        c = rng.integers(10, size - 10)
        mask[:, c:c + 2] = True
    mask &= disc
    img[mask] = (110, 40, 20)
    img = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    img[~disc] = 0
    return img, mask, disc


@pytest.mark.parametrize("tile,overlap,multiple", [(256, 32, 8), (64, 16, 8), (40, 0, 8), (2048, 0, 1)])
def test_tiling_reassembles_an_image_exactly(tile, overlap, multiple):
    x = torch.rand(2, 150, 97)
    y = tiled_predict(torch.nn.Identity(), x, tile, overlap, batch=3, multiple=multiple)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


def test_tiling_blends_overlaps():
    """A model that outputs a constant per tile: overlapping tiles mix, so the seam is a ramp."""
    calls = []

    def per_tile(t):
        calls.append(len(t))
        return torch.arange(len(t), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, *t.shape[-2:]) + len(calls)

    out = tiled_predict(per_tile, torch.zeros(1, 64, 112), 64, 16, batch=8)
    row = out[0, 32]
    assert sum(calls) == 2 and row[0] == 1 and row[-1] == 2  # two tiles: x = 0 and x = 48
    seam = row[48:64]
    assert (seam[1:] >= seam[:-1]).all() and 1 < seam[8] < 2


def test_fov_derived_from_a_generated_disc():
    img, _, disc = _fundus(200)
    fov = derive_fov(img)
    iou = (fov & disc).sum() / (fov | disc).sum()
    assert iou > 0.98


def test_metrics_count_only_fov_pixels():
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], bool)
    prob = np.array([[.9, .4, .6, .1], [.8, .2, .1, .3], [.1, .7, .2, .2], [.9, .9, .9, .0]])
    fov = np.ones((4, 4), bool)
    fov[3] = False  # the last row is outside: its mistakes must not count
    s = scores(prob, mask, fov, {"_at05": 0.5})
    # inside: vessels at .9 .4 .8 -> TP 2, FN 1; background .6 .1 .2 .1 .3 .1 .7 .2 .2 -> FP 2, TN 7
    assert s["sensitivity_at05"] == pytest.approx(2 / 3)
    assert s["specificity_at05"] == pytest.approx(7 / 9)
    assert s["accuracy_at05"] == pytest.approx(9 / 12)
    assert s["f1_at05"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    from sklearn.metrics import roc_auc_score

    assert s["auc"] == pytest.approx(roc_auc_score(mask[fov], prob[fov]))


def test_f1_optimal_threshold():
    rng = np.random.default_rng(0)
    mask = rng.random((50, 50)) < 0.2
    prob = np.where(mask, 0.55 + 0.4 * rng.random((50, 50)), 0.5 * rng.random((50, 50)))  # separable at 0.5-0.55
    t = f1_threshold([prob], [mask], [np.ones_like(mask)])
    assert 0.5 <= t <= 0.55


def _save(a, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def test_drive_and_chase_layouts(tmp_path):
    img, mask, disc = _fundus()
    for part, n in (("training", 21), ("test", 1)):
        _save(img, tmp_path / f"drive/{part}/images/{n:02d}_{part}.tif")
        _save((mask * 255).astype(np.uint8), tmp_path / f"drive/{part}/1st_manual/{n:02d}_manual1.gif")
        _save((disc * 255).astype(np.uint8), tmp_path / f"drive/{part}/mask/{n:02d}_{part}_mask.gif")
    cases = load_drive(tmp_path / "drive", "training")
    assert [c.name for c in cases] == ["21_training"] and not cases[0].fov_derived
    assert np.array_equal(cases[0].mask, mask) and np.array_equal(cases[0].fov, disc) and cases[0].second is None
    _save(img, tmp_path / "chase/Image_01L.jpg")
    _save((mask * 255).astype(np.uint8), tmp_path / "chase/Image_01L_1stHO.png")
    _save(mask, tmp_path / "chase/Image_01L_2ndHO.png")  # mode "1"
    (c,) = load_chase(tmp_path / "chase")
    assert c.fov_derived and np.array_equal(c.second, mask) and c.image.shape == (96, 96, 3)


def test_embedded_chase_db1():
    from biodl.datasets import embedded_path

    cases = load_chase(embedded_path("chase_db1"))
    assert len(cases) == 28 and cases[19].name == "Image_10R" and cases[20].name == "Image_11L"
    assert all(c.image.shape == (960, 999, 3) and c.second is not None for c in cases[:2])
    assert 0.05 < cases[0].mask.mean() < 0.1 and 0.6 < cases[0].fov.mean() < 0.85
    assert (cases[0].mask & ~cases[0].fov).sum() < 0.005 * cases[0].mask.sum()  # vessels lie in the derived FOV


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
    assert 0.5 < m["test/auc"] <= 1 and 0 <= m["test/f1_opt"] <= 1
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
    assert ev["test/auc"] == pytest.approx(m["test/auc"], abs=1e-9)
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


def test_bad_masks_are_one_line_errors(folder, tmp_path, cli):
    cfg = _config(tmp_path, folder)
    _save(np.zeros((90, 96), np.uint8), folder / "masks/case1.png")
    assert_one_line_error(cli("train", "--config", cfg, "--out", tmp_path / "a"), "case1.png", "96x90", "96x96")
    _save(np.arange(96 * 96, dtype=np.uint8).reshape(96, 96) % 3 * 100, folder / "masks/case1.png")
    assert_one_line_error(cli("train", "--config", cfg, "--out", tmp_path / "b"), "case1.png", "not binary")
    (folder / "masks/case1.png").unlink()
    assert_one_line_error(cli("train", "--config", cfg, "--out", tmp_path / "c"), "case1.png", "no vessel mask")
    assert not any((tmp_path / d).exists() for d in "abc")
