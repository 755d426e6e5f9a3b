"""biodl export: ONNX graphs with the run's preprocessing inside, checked against PyTorch."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import HEART, assert_one_line_error, main_ok
from tests.tasks.test_image import FAST, _folder

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    _folder(tmp / "data", n=40, size=32)
    main_ok("train", "--data", tmp / "data", "--out", tmp / "run", *FAST, "--set", f"data.cache_dir={tmp / 'c'}")
    return tmp


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_image_export_matches_predict(image_run, cli, tmp_path):
    run = image_run / "run"
    r = cli("export", run, "--out", tmp_path / "m.onnx")
    assert r.code == 0, r.err
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["parity"]["max_abs_difference"] <= 1e-4 and meta["parity"]["classes_identical"]
    assert meta["parity"]["test_cases"] > 0 and "largest probability difference" in r.out
    assert meta["classes"] == ["plain", "square"] and meta["inputs"][0]["shape"] == ["batch", 32, 32, 3]
    from biodl.io import sha256_file

    assert [w["sha256"] for w in meta["weights"]] == [sha256_file(run / "checkpoints" / "best.safetensors")]
    # the graph takes decoded uint8 images as they are: it gives biodl predict's probabilities
    files = sorted((image_run / "data" / "square").glob("*.png"))[:5] + sorted((image_run / "data" / "plain").glob(
        "*.png"))[:5]
    folder = tmp_path / "new"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f"{f.parent.name}_{f.name}")
    main_ok("predict", run, folder, "--out", tmp_path / "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")
    images = np.stack([np.asarray(Image.open(folder / name).convert("RGB")) for name in pred["image"]])
    got, raw = _session(tmp_path / "m.onnx").run(None, {"images": images})
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "raw_probabilities"]
    assert meta["recalibration"]["output"] == "probabilities"  # the run's temperature, inside the graph
    assert [c["method"] for c in meta["recalibration"]["maps"]] == ["temperature"]
    np.testing.assert_allclose(got, pred[["p_plain", "p_square"]].to_numpy(), atol=1e-4)  # predict's, recalibrated
    np.testing.assert_allclose(raw, pred[["raw_p_plain", "raw_p_square"]].to_numpy(), atol=1e-4)  # the model's own
    assert got.shape == (10, 2) and np.allclose(got.sum(axis=1), 1, atol=1e-5)


def test_export_of_a_vector_recalibrated_run_gives_predicts_probabilities(image_run, cli, tmp_path):
    """Any recalibration, not only a temperature, is in the graph: here vector scaling (a scale and
    a bias per class), which moves the probabilities away from the model's own."""
    run = tmp_path / "run"
    shutil.copytree(image_run / "run", run)
    assert cli("calibrate", run, "--method", "vector", "--overwrite").code == 0
    assert cli("export", run, "--out", tmp_path / "v.onnx").code == 0
    meta = json.loads((tmp_path / "v.json").read_text())
    [vector] = meta["recalibration"]["maps"]
    assert vector["method"] == "vector" and len(vector["scale"]) == len(vector["bias"]) == 2
    main_ok("predict", run, image_run / "data" / "square", "--out", tmp_path / "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")
    images = np.stack([np.asarray(Image.open(image_run / "data" / "square" / name).convert("RGB"))
                       for name in pred["image"]])
    got, raw = _session(tmp_path / "v.onnx").run(None, {"images": images})
    np.testing.assert_allclose(got, pred[["p_plain", "p_square"]].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(raw, pred[["raw_p_plain", "raw_p_square"]].to_numpy(), atol=1e-4)
    assert np.abs(got - raw).max() > 1e-3  # the map did something: the two outputs differ


def test_tabular_export_matches_predict(run_copy, cli, tmp_path):
    r = cli("export", run_copy)
    assert r.code == 0, r.err
    out = run_copy / "export" / "model.onnx"
    meta = json.loads(out.with_suffix(".json").read_text())
    columns = meta["inputs"][0]["columns"]
    assert meta["parity"]["max_abs_difference"] <= 1e-4 and len(columns) == 11 and "time" not in columns
    main_ok("predict", run_copy, HEART, "--out", tmp_path / "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")
    raw = pd.read_csv(HEART)[columns].to_numpy(np.float32)  # the raw columns, in the JSON's order
    got, own = _session(out).run(None, {"features": raw})
    np.testing.assert_allclose(got[:, 1], pred["p_DEATH_EVENT=1"], atol=1e-4)  # recalibrated, as predict's
    np.testing.assert_allclose(own[:, 1], pred["raw_p_DEATH_EVENT=1"], atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-6)


def test_export_bad_input(run_copy, cli, tmp_path, monkeypatch):
    assert_one_line_error(cli("export", run_copy, "--format", "tflite"), "--format", "unknown export format")
    assert_one_line_error(cli("export", run_copy, "--out", tmp_path / "m.txt"), "m.txt", ".onnx")
    from biodl.inference import export

    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no graph can pass: the export must leave nothing
    assert_one_line_error(cli("export", run_copy, "--out", tmp_path / "m.onnx"), "m.onnx", "disagrees with PyTorch")
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p != run_copy] == []  # no partial file either
    shutil.rmtree(run_copy / "checkpoints")
    assert_one_line_error(cli("export", run_copy), "no model checkpoint")
    assert not (run_copy / "export").exists()


@pytest.mark.parametrize("clahe", [False, True])
def test_segmentation_export_any_size(tmp_path, cli, clahe):
    """Any image size; with CLAHE (float input) the run also averages each image's 4 flips (model.tta),
    and so does its graph."""
    import yaml

    from tests.data.test_vessels import _fundus, _save

    root = tmp_path / "fundus"
    for i in range(4):
        img, mask, _ = _fundus(96, i)
        _save(img, root / f"images/case{i}.png")
        _save((mask * 255).astype(np.uint8), root / f"masks/case{i}.png")
    cfg = {"name": "seg", "task": "segmentation",
           "data": {"path": str(root), "test_images": 1, "patch": 32, "patches": 128, "batch_size": 16, "tile": 64,
                    "overlap": 8, "clahe": clahe},
           "model": {"name": "unet", "args": {"width": 8, "depth": 2}, "tta": clahe},
           "trainer": {"epochs": 1, "progress": False}}
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(cfg))
    main_ok("train", "--config", tmp_path / "seg.yaml", "--out", tmp_path / "run")
    r = cli("export", tmp_path / "run", "--out", tmp_path / "seg.onnx")
    assert r.code == 0, r.err
    meta = json.loads((tmp_path / "seg.json").read_text())
    assert meta["parity"]["max_abs_difference"] <= 1e-4 and meta["parity"]["classes_identical"]
    assert meta["inputs"][0]["dtype"] == ("float32" if clahe else "uint8")
    # any height and width, not only the training images' (the graph pads to the U-Net's multiple)
    img = _fundus(96, 3)[0][:70, :90]
    from biodl import load
    from biodl.data.vessels import prepare_fundus

    x = prepare_fundus(img, "green", True)[None] if clahe else img[None]
    got = _session(tmp_path / "seg.onnx").run(None, {"images": x})[0]
    assert got.shape == (1, 70, 90) and 0 <= got.min() and got.max() <= 1
    from biodl.inference.export import _SegmentationGraph
    import torch

    predictor = load(tmp_path / "run", device="cpu")
    inferer = predictor.members[0].inferer
    with torch.no_grad():
        ref, plain = (_SegmentationGraph(net, inferer.batch_transform, True, clahe, 4).eval()(
            torch.from_numpy(x)).numpy() for net in (predictor.end.module(inferer, predictor.pre), inferer.module))
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert (np.abs(got - plain).max() > 1e-3) == clahe  # the flips change the map where the run averages them
    assert ("3 flips" in meta["preprocessing"]["inside_graph"]) == clahe
    if not clahe:  # a fixed side must suit the U-Net's two poolings
        assert_one_line_error(cli("export", tmp_path / "run", "--out", tmp_path / "f.onnx", "--size", "50"),
                              "--size", "divisible by 4")
        r = cli("export", tmp_path / "run", "--out", tmp_path / "f.onnx", "--size", "64")
        assert r.code == 0, r.err
        assert json.loads((tmp_path / "f.json").read_text())["inputs"][0]["shape"] == ["batch", 64, 64, 3]
        assert not (tmp_path / "f.onnx.partial").exists()
