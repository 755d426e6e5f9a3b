"""biodl.load(run) -> Predictor: one object for every kind of run, one rule that combines its
members, one column vocabulary for its predictions, and every part checked when it is loaded."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import biodl
from biodl import runs
from biodl.inference.predictor import MapPredictor, RunParts
from biodl.trust.conformal import describe
from tests.conftest import HEART, ROOT, assert_one_line_error, main_ok
from tests.tasks.test_crossval import _tree

COLUMNS = ["image", "p_0", "p_1", "raw_p_0", "raw_p_1", "predicted", "set", "entropy", "mutual_information"]
TINY = ["--epochs", "2", "--set", "trainer.progress=false", "--set", "n_boot=100",
        "--set", "model.args={width: 8, blocks: 1}"]


@pytest.fixture(scope="module")
def three_kinds(tmp_path_factory):
    """A single run, a 3-fold parent and a 3-member ensemble of image runs on one patient tree."""
    tmp = tmp_path_factory.mktemp("kinds")
    _tree(tmp / "tree")
    common = ["--data", tmp / "tree", *TINY, "--set", f"data.cache_dir={tmp / 'cache'}"]
    main_ok("train", *common, "--out", tmp / "single")
    main_ok("train", *common, "--out", tmp / "kfold", "--set", "data.split=kfold", "--set", "data.folds=3")
    main_ok("train", *common, "--out", tmp / "ensemble", "--ensemble", "3")
    return tmp


def test_predict_gives_the_same_columns_for_a_single_run_a_kfold_parent_and_an_ensemble(three_kinds, cli):
    new = three_kinds / "tree" / "pat0"
    tables = {}
    for kind in ("single", "kfold", "ensemble"):
        out = three_kinds / f"{kind}.csv"
        r = cli("predict", three_kinds / kind, new, "--out", out)
        assert r.code == 0, r.err
        tables[kind] = pd.read_csv(out, keep_default_na=False)
        assert tables[kind].columns.tolist() == COLUMNS, kind
        assert len(tables[kind]) == 8 and set(tables[kind]["set"]) <= {"{}", "{0}", "{1}", "{0, 1}"}
    assert tables["single"]["mutual_information"].eq(0).all()  # one network, one pass: nothing to disagree
    assert tables["kfold"]["mutual_information"].gt(0).any() and tables["ensemble"]["mutual_information"].gt(0).any()


def test_a_kfold_parent_is_the_mean_of_its_recalibrated_folds_and_their_majority_set(three_kinds, cli):
    """p = mean_k R_k(softmax(fold_k)): each fold's own map; the set: the classes more than half of
    the folds' own sets hold; the raw probabilities: the folds' plain mean."""
    new = three_kinds / "tree" / "pat1"
    parent = biodl.load(three_kinds / "kfold")
    assert parent.kind == "kfold" and len(parent.members) == 3 and parent.recalibration is None
    assert all(m.recalibration is not None and m.conformal is not None for m in parent.members)
    got = parent.predict(new)
    folds = [biodl.load(runs.fold_dir(three_kinds / "kfold", k)).predict(new) for k in range(3)]
    raw = np.mean([f[["raw_p_0", "raw_p_1"]].to_numpy() for f in folds], axis=0)
    final = np.mean([f[["p_0", "p_1"]].to_numpy() for f in folds], axis=0)
    np.testing.assert_allclose(got[["raw_p_0", "raw_p_1"]].to_numpy(), raw, atol=1e-6)
    np.testing.assert_allclose(got[["p_0", "p_1"]].to_numpy(), final, atol=1e-6)
    member = np.stack([[[f"{c}" in s.strip("{}").split(", ") for c in (0, 1)] for s in f["set"]] for f in folds])
    assert got["set"].tolist() == describe(member.sum(axis=0) >= 2, ["0", "1"])
    # the module form follows the same rule: its softmax is the same probabilities
    images = parent.read(new).data
    x = images[torch.arange(len(images))][0].float().div(255)
    with torch.no_grad():
        for recalibrated, cols in ((True, ["p_0", "p_1"]), (False, ["raw_p_0", "raw_p_1"])):
            p = torch.softmax(parent.as_module(recalibrated)(x), 1).numpy()
            np.testing.assert_allclose(p, got[cols].to_numpy(), atol=1e-5)


def test_an_ensemble_recalibrates_its_mean_once_and_arrays_read_like_files(three_kinds):
    """An ensemble's members have no maps of their own (the parent's was fitted on their mean);
    images given as uint8 arrays are read as the same files are."""
    from PIL import Image

    ens = biodl.load(three_kinds / "ensemble")
    assert ens.kind == "ensemble" and ens.recalibration is not None and ens.conformal is not None
    assert all(m.recalibration is None and m.conformal is None for m in ens.members)
    files = sorted((three_kinds / "tree" / "pat2").rglob("*.png"))
    arrays = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    members = ens.samples(ens.read(arrays)).mean(axis=1)  # (M, N, K)
    np.testing.assert_allclose(ens.predict_proba(arrays), ens.recalibration.apply(members.mean(axis=0)), atol=1e-9)
    np.testing.assert_allclose(ens.predict_proba(files, recalibrated=False), members.mean(axis=0), atol=1e-6)
    assert ens.sets(members).shape == (len(files), 2)


def test_a_tabular_single_run_and_ensemble_predict_with_the_same_columns(trained_run, cli, tmp_path):
    r = cli("train", "--config", ROOT / "examples/heart_failure_mlp.yaml", "--out", tmp_path / "ens",
            "--set", "trainer.epochs=4", "--set", "trainer.progress=false", "--ensemble", "3")
    assert r.code == 0, r.err
    new = tmp_path / "new.csv"
    pd.read_csv(HEART).drop(columns=["DEATH_EVENT"]).head(20).to_csv(new, index=False)
    cols = {}
    for kind, run in (("single", trained_run), ("ensemble", tmp_path / "ens")):
        out = tmp_path / f"{kind}.csv"
        assert cli("predict", run, new, "--out", out).code == 0
        cols[kind] = pd.read_csv(out).columns.tolist()
    assert cols["single"] == cols["ensemble"] == [*pd.read_csv(new).columns, "p_DEATH_EVENT=0", "p_DEATH_EVENT=1",
                                                  "raw_p_DEATH_EVENT=0", "raw_p_DEATH_EVENT=1", "predicted", "set",
                                                  "entropy", "mutual_information"]
    # a DataFrame, a CSV file and an array of the features give the same probabilities
    p = biodl.load(trained_run)
    table = pd.read_csv(new)
    by_file = p.predict_proba(new)
    np.testing.assert_array_equal(p.predict_proba(table), by_file)
    np.testing.assert_allclose(p.predict_proba(table[p.pre.features].to_numpy(float)), by_file, atol=1e-12)


def test_a_segmentation_predictor_gives_maps_masks_and_a_row_per_image(tmp_path, cli):
    import yaml

    from tests.data.test_vessels import _fundus, _save

    root = tmp_path / "fundus"
    for i in range(4):
        img, mask, _ = _fundus(64, i)
        _save(img, root / f"images/case{i}.png")
        _save((mask * 255).astype(np.uint8), root / f"masks/case{i}.png")
    cfg = {"name": "seg", "task": "segmentation", "data": {"path": str(root), "test_images": 1, "patches": 128,
                                                            "patch": 32, "batch_size": 16, "tile": 64, "overlap": 8},
           "model": {"name": "unet", "args": {"width": 8, "depth": 2}}, "trainer": {"epochs": 1, "progress": False}}
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(cfg))
    main_ok("train", "--config", tmp_path / "seg.yaml", "--out", tmp_path / "run")
    p = biodl.load(tmp_path / "run", device="cpu")
    assert isinstance(p, MapPredictor) and p.sets(np.zeros((1, 2))) is None
    found, maps, masks = p.predict_maps(root / "images")
    assert [m.shape for m in maps] == [(64, 64)] * 4 and all(((m >= 0) & (m <= 1)).all() for m in maps)
    np.testing.assert_array_equal(masks[0], (maps[0] >= p.threshold) & p.end.fov(found.data[0]))
    r = cli("predict", tmp_path / "run", root / "images", "--out", tmp_path / "pred")
    assert r.code == 0, r.err
    table = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert table["image"].tolist() == [f"case{i}" for i in range(4)]
    assert table["positive_pixels"].tolist() == [int(m.sum()) for m in masks]
    assert sorted(f.name for f in (tmp_path / "pred").iterdir()) == sorted(
        ["predictions.csv", "threshold.json", *(f"case{i}_{k}.png" for i in range(4) for k in ("prob", "mask"))])


def test_an_ensemble_of_identical_members_equals_its_member():
    from biodl.inference.members import MemberMean
    from biodl.interpret import PixelModel
    from biodl.models import create_model

    torch.manual_seed(0)
    net = create_model("resnet_small", num_classes=3, width=8, blocks=1).eval()
    x = torch.rand(4, 3, 16, 16)
    mean, std = [0.4] * 3, [0.2] * 3
    ens = MemberMean([PixelModel(net, mean, std)] * 3).eval()
    with torch.no_grad():
        want = torch.softmax(net((x - 0.4) / 0.2), 1)
        torch.testing.assert_close(torch.softmax(ens(x), 1), want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- every part checked on load


@pytest.fixture
def damaged(three_kinds, tmp_path, monkeypatch):
    """Copies of the runs to damage, and a counter of networks built (none may be, on a fault)."""
    from biodl.tasks.image_data import ImageEnd

    built = []
    network = ImageEnd.network
    monkeypatch.setattr(ImageEnd, "network", lambda self, *a: built.append(1) or network(self, *a))
    for kind in ("single", "kfold"):
        shutil.copytree(three_kinds / kind, tmp_path / kind)
    return tmp_path, built


def test_a_missing_or_foreign_part_is_one_line_before_any_network_is_built(damaged, trained_run, cli):
    tmp, built = damaged
    single, kfold = tmp / "single", tmp / "kfold"
    (single / "conformal.json").write_text(json.dumps({**json.loads((single / "conformal.json").read_text()),
                                                        "classes": 3}))
    assert_one_line_error(cli("predict", single, tmp), "conformal.json", "is for 3 classes; the run has 2")
    shutil.copy(trained_run / "preprocess.json", single / "preprocess.json")  # a tabular run's part
    assert_one_line_error(cli("predict", single, tmp), "preprocess.json", "does not fit a run of task image")
    (single / "preprocess.json").unlink()
    assert_one_line_error(cli("evaluate", single), "preprocess.json", "missing")
    shutil.copy(trained_run / "config.yaml", kfold / "folds/fold2/config.yaml")  # a fold of another task
    assert_one_line_error(cli("predict", kfold, tmp), "fold2", "is a tabular run inside a image run")
    shutil.copy(kfold / "folds/fold1/config.yaml", kfold / "folds/fold2/config.yaml")
    shutil.rmtree(kfold / "folds/fold3/checkpoints")
    assert_one_line_error(cli("predict", kfold, tmp), "fold3", "no model checkpoint")
    assert built == []  # every fault above was found before a network was built
    assert not list(tmp.rglob("predictions"))  # and nothing was written


def test_a_checkpoint_of_another_shape_is_one_line(damaged, cli):
    import yaml

    tmp, _ = damaged
    run = tmp / "single"
    config = runs.load_run_config(run).model_dump(mode="json")
    config["model"]["args"]["width"] = 16  # the weights are width 8
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    r = cli("predict", run, tmp / "kfold" / "folds", "--out", tmp / "out" / "p.csv")
    assert_one_line_error(r, "best.safetensors", "made for another architecture", "shape mismatch")
    assert not (tmp / "out").exists()


# ----------------------------------------------------------------------------- the Python face


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python section, as written, on a generated image folder (fewer epochs)."""
    from tests.tasks.test_image import _folder

    text = (ROOT / "README.md").read_text()
    start = text.index("```python", text.index("## Python"))
    code = text[start + len("```python"):text.index("```", start + 3)]
    assert len([line for line in code.strip().splitlines() if line.strip()]) <= 6
    _folder(tmp_path / "my_images", n=40, size=16)
    shutil.copytree(tmp_path / "my_images" / "square", tmp_path / "new_images")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BIODL_CACHE", str(tmp_path / "cache"))
    scope: dict = {}
    exec(code.replace("epochs=20", "epochs=1"), scope)  # noqa: S102 - the README's own code
    assert isinstance(scope["run"], biodl.Run) and scope["run"].metrics["test/accuracy"] >= 0
    table = scope["predictions"]
    assert len(table) == len(list((tmp_path / "new_images").iterdir())) and "predicted" in table


def test_run_of_a_parent_holds_no_trainer_and_parts_load_without_networks(three_kinds):
    parts = RunParts.load(three_kinds / "kfold")
    assert parts.kind == "kfold" and parts.recalibration_sites == [runs.fold_dir(three_kinds / "kfold", k)
                                                                   for k in range(3)]
    assert not any(hasattr(m, "inferer") for m in parts.members)
    run = biodl.train(None, three_kinds / "kfold", resume=True)  # every fold done: the parent is pooled again
    assert run.trainer is None and run.run_dir == three_kinds / "kfold" and "test/roc_auc" in run.metrics


def test_predicting_a_table_of_earlier_predictions_replaces_their_columns_with_a_warning(trained_run, tmp_path, cli):
    new = tmp_path / "new.csv"
    pd.read_csv(HEART).drop(columns=["DEATH_EVENT"]).head(10).to_csv(new, index=False)
    assert cli("predict", trained_run, new, "--out", tmp_path / "once.csv").code == 0
    r = cli("predict", trained_run, tmp_path / "once.csv", "--out", tmp_path / "twice.csv")
    assert r.code == 0 and "warning: the input's columns p_DEATH_EVENT=0, p_DEATH_EVENT=1" in r.err
    once, twice = pd.read_csv(tmp_path / "once.csv"), pd.read_csv(tmp_path / "twice.csv")
    assert twice.columns.tolist() == once.columns.tolist()
    np.testing.assert_allclose(twice["p_DEATH_EVENT=1"], once["p_DEATH_EVENT=1"], atol=1e-7)
