"""The image task end to end on small generated data: every layout trains; bad input is one line."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.conftest import assert_one_line_error

FAST = ["--set", "trainer.epochs=2", "--set", "trainer.progress=false", "--set", "n_boot=100",
        "--set", "data.batch_size=16", "--set", "model.args={width: 8, blocks: 1}"]


def _square_images(n, size=16, seed=0):
    """Class 1 has a bright square in the top-left corner; class 0 does not."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 80, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 2
    x[y == 1, 2:7, 2:7] = 250
    return x, y


def _folder(root, n=60, size=16):
    x, y = _square_images(n, size)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        d = root / ("square" if label else "plain")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    return root


def _config(tmp_path, path, **data):
    cfg = {"name": "img", "task": "image", "data": {"path": str(path), "cache_dir": str(tmp_path / "cache"), **data},
           "model": {"name": "resnet_small"}, "optimizer": {"lr": 0.01}}
    p = tmp_path / "run.yaml"
    import yaml

    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    from biodl.cli import main

    tmp = tmp_path_factory.mktemp("img")
    _folder(tmp / "data")
    cfg = _config(tmp, tmp / "data")
    try:
        main(["train", "--config", str(cfg), "--out", str(tmp / "run"), *FAST, "--set", "trainer.epochs=6"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return tmp


def test_folder_layout_trains_and_learns(folder_run):
    run = folder_run / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["test/accuracy"] > 0.8  # the square is easy to see
    assert m["test/accuracy_ci_low"] <= m["test/accuracy"] <= m["test/accuracy_ci_high"]
    pre = json.loads((run / "preprocess.json").read_text())
    assert pre["classes"] == ["plain", "square"] and pre["size"] == 16
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["split"] == "stratified" and sum(manifest["split_sizes"].values()) == 60
    cm = pd.read_csv(run / "test_confusion.csv")
    per_class = pd.read_csv(run / "test_per_class.csv")
    assert cm["true"].tolist() == ["plain", "square"] and list(cm.columns) == ["true", "pred plain", "pred square"]
    n_test = manifest["split_sizes"]["test"]
    assert cm[["pred plain", "pred square"]].to_numpy().sum() == n_test == per_class["support"].sum()
    accuracy = np.trace(cm[["pred plain", "pred square"]].to_numpy()) / n_test
    assert accuracy == pytest.approx(m["test/accuracy"], abs=1e-6)  # the tables agree with metrics.json
    auc = per_class["roc_auc"].to_numpy()  # two classes: one-vs-rest AUCs mirror each other and the macro AUC
    assert auc[0] == pytest.approx(auc[1]) and auc.mean() == pytest.approx(m["test/roc_auc"], abs=1e-5)
    assert ((per_class["pr_auc"] > 0) & (per_class["pr_auc"] <= 1)).all()
    with Image.open(run / "test_curves.png") as im:
        assert im.format == "PNG" and im.width > 2 * im.height > 400  # ROC and PR side by side
    assert len(list((folder_run / "cache").iterdir())) == 1  # decoded once, cached


def test_evaluate_rebuilds_the_test_report(folder_run, cli):
    import shutil

    run = folder_run / "copy"
    shutil.copytree(folder_run / "run", run)
    r = cli("evaluate", run)
    assert r.code == 0, r.err
    ev = json.loads((run / "evaluation/test.json").read_text())
    m = json.loads((run / "metrics.json").read_text())
    assert ev["test/accuracy"] == pytest.approx(m["test/accuracy"])
    assert ev["test/roc_auc_ci_low"] == m["test/roc_auc_ci_low"]
    assert (run / "evaluation/test_confusion.csv").read_text() == (run / "test_confusion.csv").read_text()


def test_predict_folder_of_images(folder_run, cli):
    run = folder_run / "run"
    r = cli("predict", run, folder_run / "data" / "square")
    assert r.code == 0, r.err
    df = pd.read_csv(run / "predictions" / "square.csv")
    assert len(df) == 30 and (df["predicted"] == "square").mean() > 0.8
    assert sorted(df["image"]) == sorted(p.name for p in (folder_run / "data" / "square").iterdir())  # traceable
    np.testing.assert_allclose(df[["p_plain", "p_square"]].sum(axis=1), 1, atol=1e-5)


def test_mc_dropout_gives_each_case_its_disagreement(tmp_path, cli):
    """model.mc_dropout: the test predictions are the mean over the passes; each case gets its
    entropy and mutual information, and referral by each lands in metrics.json and the report."""
    from biodl.trust import uncertainty

    x, y = _square_images(60)
    np.savez(tmp_path / "set.npz", train_images=x[:40], train_labels=y[:40, None], val_images=x[40:50],
             val_labels=y[40:50, None], test_images=x[50:], test_labels=y[50:, None])
    cfg = _config(tmp_path, tmp_path / "set.npz")
    r = cli("train", "--config", cfg, "--out", tmp_path / "mc", *FAST, "--set",
            "model.args={width: 8, blocks: 1, dropout: 0.5}", "--set", "model.mc_dropout=5")
    assert r.code == 0, r.err
    run = tmp_path / "mc"
    m = json.loads((run / "metrics.json").read_text())
    df = pd.read_csv(run / "test_predictions.csv")
    prob = df[["p_0", "p_1"]].to_numpy()
    np.testing.assert_allclose(df["entropy"], uncertainty.entropy(prob), atol=1e-5)
    assert (df["mutual_information"] >= 0).all() and df["mutual_information"].max() > 0
    assert m["test/mean_mutual_information"] == pytest.approx(df["mutual_information"].mean(), abs=1e-6)
    assert m["test/aurc_mutual_information"] == pytest.approx(
        uncertainty.aurc(df["label"].to_numpy(), prob, df["mutual_information"].to_numpy()), abs=1e-6)
    assert (run / "test_referral.png").is_file() and "mutual information" in (run / "report.html").read_text()
    r = cli("predict", run, tmp_path / "set.npz")  # not an image folder
    assert r.code == 2
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(x[50 + i]).save(tmp_path / "imgs" / f"{i}.png")
    assert cli("predict", run, tmp_path / "imgs").code == 0
    pred = pd.read_csv(run / "predictions" / "imgs.csv")
    assert {"entropy", "mutual_information"} <= set(pred.columns) and (pred["mutual_information"] > 0).any()
    # a single run without MC dropout: entropy only
    r = cli("train", "--config", cfg, "--out", tmp_path / "plain", *FAST)
    assert r.code == 0, r.err
    plain = pd.read_csv(tmp_path / "plain" / "test_predictions.csv")
    assert "entropy" in plain and "mutual_information" not in plain
    assert "test/aurc_entropy" in json.loads((tmp_path / "plain" / "metrics.json").read_text())
    # no dropout in the model: refused before anything is written
    r = cli("train", "--config", cfg, "--out", tmp_path / "nodrop", *FAST, "--set", "model.mc_dropout=5")
    assert r.code == 2 and "model.mc_dropout" in r.err and "no dropout layer" in r.err
    assert not (tmp_path / "nodrop").exists()


def test_npz_and_npy_layouts(tmp_path, cli):
    x, y = _square_images(60)
    np.savez(tmp_path / "set.npz", train_images=x[:40], train_labels=y[:40, None], val_images=x[40:50],
             val_labels=y[40:50, None], test_images=x[50:], test_labels=y[50:, None])
    r = cli("train", "--config", _config(tmp_path, tmp_path / "set.npz"), "--out", tmp_path / "a", *FAST)
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "a/manifest.json").read_text())["split_sizes"] == {"train": 40, "val": 10, "test": 10}
    (tmp_path / "idc").mkdir()
    np.save(tmp_path / "idc/X.npy", x)
    np.save(tmp_path / "idc/Y.npy", y)
    r = cli("train", "--config", _config(tmp_path, tmp_path / "idc"), "--out", tmp_path / "b", *FAST)
    assert r.code == 0, r.err


def test_balance_by_sampler_or_loss(tmp_path, cli, monkeypatch):
    from biodl.engine import Trainer

    seen = {}
    fit = Trainer.fit

    def spy(self, train, val=None, resume=False, sample_weights=None):
        seen["draw"], seen["loss"] = sample_weights, self.loss_fn
        return fit(self, train, val, resume, sample_weights)

    monkeypatch.setattr(Trainer, "fit", spy)
    x, y = _square_images(60)
    y = (np.arange(60) % 6 == 0).astype(np.int64)  # 10 of 60 in class 1
    np.savez(tmp_path / "set.npz", train_images=x[:48], train_labels=y[:48], val_images=x[48:54],
             val_labels=y[48:54], test_images=x[54:], test_labels=y[54:])
    r = cli("train", "--config", _config(tmp_path, tmp_path / "set.npz"), "--out", tmp_path / "s", *FAST,
            "--set", "data.balance=sampler")
    assert r.code == 0, r.err
    draw = seen["draw"].numpy()
    assert draw.shape == (48,)  # one weight per training image: n / (classes x count of its class)
    np.testing.assert_allclose(draw[y[:48] == 0], 48 / (2 * 40))
    np.testing.assert_allclose(draw[y[:48] == 1], 48 / (2 * 8))
    out, t = torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1])
    plain = torch.nn.functional.cross_entropy(out, t)
    assert torch.isclose(seen["loss"](out, t), plain)  # the sampler balances; the loss is not weighted too
    r = cli("train", "--config", _config(tmp_path, tmp_path / "set.npz"), "--out", tmp_path / "l", *FAST)
    assert r.code == 0, r.err
    assert seen["draw"] is None and not torch.isclose(seen["loss"](out, t), plain)  # default: weighted loss
    r = cli("train", "--config", _config(tmp_path, tmp_path / "set.npz"), "--out", tmp_path / "x", *FAST,
            "--set", "data.balance=oversample")
    assert_one_line_error(r, "data.balance", "'loss', 'sampler' or 'none'")


def test_patient_tree_keeps_patients_apart(tmp_path, cli):
    x, y = _square_images(80)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        d = tmp_path / "tree" / f"patient{i // 4}" / str(label)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    r = cli("train", "--config", _config(tmp_path, tmp_path / "tree"), "--out", tmp_path / "run", *FAST)
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "run/manifest.json").read_text())["split"] == "patient"
    # predictions can be traced to their files and patients, and the CIs resample patients
    pred = pd.read_csv(tmp_path / "run/test_predictions.csv", dtype={"patient": str})
    assert list(pred.columns[:5]) == ["row", "source", "patient", "label", "true"]
    for src, patient, label in zip(pred["source"], pred["patient"], pred["label"], strict=True):
        assert src.split("/")[:2] == [patient, str(label)] and (tmp_path / "tree" / src).is_file()
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert metrics["test/ci_clusters"] == pred["patient"].nunique() >= 2
    assert "95% CIs: cluster bootstrap over" in r.out
    assert "cluster bootstrap: patients resampled" in (tmp_path / "run/report.html").read_text()
    r = cli("evaluate", tmp_path / "run")
    assert r.code == 0, r.err
    ev = json.loads((tmp_path / "run/evaluation/test.json").read_text())
    assert ev["test/accuracy_ci_low"] == metrics["test/accuracy_ci_low"] and ev["test/ci_clusters"] == metrics[
        "test/ci_clusters"]
    assert (tmp_path / "run/evaluation/test_predictions.csv").read_text() == (
        tmp_path / "run/test_predictions.csv").read_text()


def test_bad_image_and_missing_csv_file_are_one_line_errors(tmp_path, cli):
    _folder(tmp_path / "data", n=20)
    (tmp_path / "data" / "plain" / "broken.png").write_bytes(b"")
    r = cli("train", "--config", _config(tmp_path, tmp_path / "data"), "--out", tmp_path / "run", *FAST)
    assert_one_line_error(r, "1 unreadable image", "plain/broken.png (empty file)", "--set data.skip_bad=true")
    assert not (tmp_path / "run").exists()
    (tmp_path / "labels.csv").write_text("image,label\nplain/0.png,a\nnowhere.png,b\n")
    r = cli("train", "--config", _config(tmp_path, tmp_path / "labels.csv", images=str(tmp_path / "data")),
            "--out", tmp_path / "run2", *FAST)
    assert_one_line_error(r, "labels.csv", "ids name no file", "line 3 (nowhere.png)")


def test_npz_missing_key_is_a_one_line_error(tmp_path, cli):
    x, y = _square_images(10)
    np.savez(tmp_path / "set.npz", train_images=x)
    r = cli("train", "--config", _config(tmp_path, tmp_path / "set.npz"), "--out", tmp_path / "run", *FAST)
    assert_one_line_error(r, "set.npz", "missing keys: train_labels")


def test_train_straight_from_data_with_no_config(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("BIODL_CACHE", str(tmp_path / "cache"))
    _folder(tmp_path / "scans", n=40, size=20)
    r = cli("train", "--data", tmp_path / "scans", "--epochs", "1", "--out", tmp_path / "run",
            "--set", "trainer.progress=false", "--set", "n_boot=100")
    assert r.code == 0, r.err
    import yaml

    cfg = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    assert cfg["task"] == "image" and cfg["data"]["path"] == str(tmp_path / "scans")
    assert cfg["model"]["name"] == "auto" and cfg["trainer"]["epochs"] == 1
    assert json.loads((tmp_path / "run/preprocess.json").read_text())["size"] == 20
    assert "Warning" not in r.err and "warning" not in r.err  # scikit-learn's resample warnings stay quiet


@pytest.fixture(scope="module")
def histopathology(tutorial):
    """``biodl run histopathology`` on the embedded patients, short (2 folds, 1 epoch), from an
    empty cache: the run the histopathology tutorial makes, what it printed on stderr, and its
    cache. Read only!"""
    book = tutorial("04-histopathology.ipynb")
    return book.run("idc"), book.stderr, book.cache


def test_histopathology_runs_on_the_embedded_patients(histopathology):
    """No --data: the 10 embedded IDC patients in folds by patient, edge crops padded, pooled
    out-of-fold predictions traceable to file and patient, patient-level CIs."""
    run, err, _ = histopathology
    assert "padded 6 smaller edge crops to 50 x 50" in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["split"] == "2-fold cross-validation, by patient" and manifest["n_images"] == 4982
    pred = pd.read_csv(run / "test_predictions.csv", dtype={"patient": str})
    assert len(pred) == 4982 and set(pred["fold"]) == {1, 2}
    assert pred["source"].str.match(r"^\d{4}/[01]/\d{4}_idx5_x\d+_y\d+_class[01]\.png$").all()
    assert (pred["source"].str.split("/").str[0] == pred["patient"]).all()
    assert pred.groupby("patient")["fold"].nunique().max() == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/ci_clusters"] == 10  # every patient tested once, and resampled as a whole
    for key in ("balanced_accuracy", "f1", "precision", "sensitivity", "specificity", "roc_auc", "pr_auc", "mcc"):
        assert metrics[f"test/{key}_ci_low"] <= metrics[f"test/{key}"] <= metrics[f"test/{key}_ci_high"], key
    pre = json.loads((run / "preprocess.json").read_text())
    assert pre["classes"] == ["no IDC", "IDC"] and pre["fit"] == "pad" and pre["patch"] == pre["size"] == 50
    assert pre["folds"] == 2 and (run / "folds/fold2/checkpoints/best.safetensors").is_file()
    maps = sorted(p.name for p in run.glob("slide_*.png"))  # every patient's slide, out of fold
    assert maps == [f"slide_{p}.png" for p in sorted(pred["patient"].unique())] and len(maps) == 10
    html = (run / "report.html").read_text()
    manifest = json.loads((run / "manifest.json").read_text())
    assert "Slide maps" in html and "Per patient" in html and "Beside the published results" in html
    published = pd.read_csv(run / "published.csv")
    assert published["F1 (IDC)"].tolist()[1:] == ["0.718", "0.765"] and "CIs over 10 patients" in published.iloc[0, 0]
    per_patient = pd.read_csv(run / "test_per_patient.csv", dtype={"patient": str})
    assert len(per_patient) == 10 and per_patient["images"].sum() == 4982
    assert per_patient.set_index("patient").loc["8916", "true_fraction"] == pytest.approx(111 / 171)
    explained = json.loads((run / "explain/explain.json").read_text())  # IDC true and false positives, out of fold
    assert explained["methods"] == ["gradcam", "ig"] and {i["outcome"] for i in explained["images"]} <= {"tp", "fp"}
    for image in explained["images"]:
        assert image["true"] == ("IDC" if image["outcome"] == "tp" else "no IDC") and image["predicted"] == "IDC"
        assert image["fold"] == pred.set_index("row").loc[image["row"], "fold"]
    assert "Attributions" in html
    # the time split: decoded once by the parent (an empty cache), read back from the cache by each fold
    seconds = manifest["seconds"]
    assert set(seconds) == {"decode", "cache", "train", "evaluate", "total"}
    folds = [json.loads((run / f"folds/fold{k}/manifest.json").read_text())["seconds"] for k in (1, 2)]
    assert all("decode" not in f and "cache" in f for f in folds)  # read back, never decoded again
    assert seconds["train"] == pytest.approx(sum(f["train"] for f in folds), abs=0.11)
    assert seconds["total"] >= seconds["decode"] + seconds["train"] - 1
    assert "wall time" in html


def test_a_resumed_histopathology_run_gets_its_published_table(histopathology, cli, tmp_path, monkeypatch):
    """`biodl run histopathology --resume` finishes like a fresh run: the study's own table too."""
    import shutil

    monkeypatch.setenv("BIODL_CACHE", str(histopathology[2]))  # warm, as after the run
    shutil.copytree(histopathology[0], tmp_path / "run")
    for name in ("published.csv", "published.md", "metrics.json"):
        (tmp_path / "run" / name).unlink()
    shutil.rmtree(tmp_path / "run/folds/fold2")
    r = cli("run", "histopathology", "--resume", "--out", tmp_path / "run")
    assert r.code == 0, r.err
    assert (tmp_path / "run/published.csv").is_file() and "Beside the published results" in (
        tmp_path / "run/report.html").read_text()
    assert (tmp_path / "run/folds/fold2/metrics.json").is_file()


def test_histopathology_transfer_learning_from_a_local_file(cli, tmp_path, monkeypatch):
    import torch
    import torchvision
    from safetensors.torch import save_file

    monkeypatch.setenv("BIODL_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.safetensors"  # stands in for torchvision's ImageNet file
    source = torchvision.models.resnet18(weights=None).state_dict()
    save_file({k: v.contiguous() for k, v in source.items()}, str(weights))
    x, y = _square_images(48, size=50)
    (tmp_path / "idc").mkdir()
    np.save(tmp_path / "idc/X.npy", x)
    np.save(tmp_path / "idc/Y.npy", y)
    r = cli("run", "histopathology", "--data", tmp_path / "idc", "--out", tmp_path / "run",
            "--set", "model.name=resnet18", "--set", "model.args={}", "--set", "data.split=auto",
            "--set", f"model.pretrained={weights}", "--set", "trainer.epochs=2", "--set", "model.freeze_epochs=1",
            "--set", "data.size=32", "--set", "trainer.progress=false", "--set", "n_boot=100")
    assert r.code == 0, r.err
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert manifest["pretrained"]["dropped_head"] == ["fc.bias", "fc.weight"]
    assert manifest["pretrained"]["loaded"] == len(source) - 2  # everything but fc.weight and fc.bias
    assert manifest["pretrained"]["kept_random"] == []
    pre = json.loads((tmp_path / "run/preprocess.json").read_text())
    assert pre["classes"] == ["no IDC", "IDC"] and pre["size"] == 32
    html = (tmp_path / "run/report.html").read_text()  # the study's report, like every image run's
    assert html.count("data:image/png;base64,") >= 5 and "no IDC" in html and str(weights) in html


def test_a_bad_pretrained_file_or_model_leaves_no_run_directory(tmp_path, cli):
    _folder(tmp_path / "data", n=20)
    cfg = _config(tmp_path, tmp_path / "data")
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not weights")
    for override, fragment in ((f"model.pretrained={tmp_path / 'absent.pth'}", "never downloads weights"),
                               (f"model.pretrained={bad}", "not a readable PyTorch weights file"),
                               ("model.name=resnet_smal", "did you mean 'resnet_small'")):
        r = cli("train", "--config", cfg, "--out", tmp_path / "run", *FAST, "--set", override)
        assert_one_line_error(r, fragment)
        assert not (tmp_path / "run").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]  # no staging folder


def test_csv_layout_names_the_real_folder_not_dot(tmp_path, cli, monkeypatch):
    _folder(tmp_path / "data", n=8)
    (tmp_path / "labels.csv").write_text("image,label\nplain/0.png,a\nplain/missing.png,b\n")
    monkeypatch.chdir(tmp_path / "data")
    r = cli("train", "--data", tmp_path / "labels.csv", "--images", ".", "--out", tmp_path / "run", *FAST)
    assert_one_line_error(r, "labels.csv", f"1 ids name no file in {tmp_path / 'data'}:", "line 3 (plain/missing.png)")


def test_device_cache_on_trains_exactly_like_the_disk_cache(tmp_path, cli):
    """data.device_cache: on (the CPU standing in for the device: the set read into one tensor,
    batches gathered from it) gives the same weights after 2 epochs as batches read ahead from
    the disk cache; a set that does not fit the stated share is one line, exit 2, no run."""
    from safetensors.torch import load_file

    _folder(tmp_path / "data", n=48)
    cfg = _config(tmp_path, tmp_path / "data")
    runs = {}
    for mode in ("off", "on", "auto"):
        r = cli("train", "--config", cfg, "--out", tmp_path / mode, *FAST, "--set", f"data.device_cache={mode}")
        assert r.code == 0, r.err
        runs[mode] = load_file(tmp_path / mode / "checkpoints/last.safetensors")
        home = json.loads((tmp_path / mode / "manifest.json").read_text())["device_cache"]
        assert home["resident"] == (mode == "on") and home["set_bytes"] == 48 * 16 * 16 * 3
    assert runs["off"].keys() == runs["on"].keys() and len(runs["on"]) > 10
    for k in runs["off"]:
        assert torch.equal(runs["off"][k], runs["on"][k]), k
        assert torch.equal(runs["off"][k], runs["auto"][k]), k  # auto on the CPU: the disk cache
    r = cli("train", "--config", cfg, "--out", tmp_path / "big", *FAST, "--set", "data.device_cache=on",
            "--set", "data.device_cache_share=1e-12")
    assert_one_line_error(r, "data.device_cache", "the decoded set needs 0.00 GiB", "GiB free on cpu")
    assert not (tmp_path / "big").exists()
