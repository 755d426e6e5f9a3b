"""A received or damaged run directory: non-finite weights and statistics, probabilities that are
not probabilities, a NaN conformal threshold, NaN in metrics.json, races and unwritable outputs.
Each is one line naming the file, exit 2, and nothing written or overwritten."""

import json
import os
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from biodl import runs
from biodl.engine.checkpoint import save_checkpoint
from biodl.errors import BiodlError
from biodl.io import atomic_write_text, read_json
from tests.conftest import HEART, assert_one_line_error


def _poison_weight(run, value=float("nan")):
    """Set one weight of the run's best checkpoint to ``value``, keeping the checkpoint's record
    consistent (a diverged training run leaves exactly this)."""
    prefix = runs.checkpoint_prefix(run)
    tensors = load_file(str(prefix.with_suffix(".safetensors")))
    meta = read_json(prefix.with_suffix(".json"))
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.ndim == 2)
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] = value
    save_checkpoint(prefix, tensors, {k: v for k, v in meta.items() if k not in ("format", "version",
                                                                              "safetensors_sha256")})
    return key


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_run_with_non_finite_weights_is_refused_by_every_command_that_loads_it(run_copy, cli, tmp_path, value):
    key = _poison_weight(run_copy, value)
    before = sorted(p.name for p in run_copy.iterdir())
    for args in (("predict", run_copy, HEART, "--out", tmp_path / "p.csv"), ("evaluate", run_copy),
                 ("explain", run_copy), ("export", run_copy, "--out", tmp_path / "m.onnx")):
        assert_one_line_error(cli(*args), "best.safetensors", "NaN or infinite weights", key)
    assert sorted(p.name for p in run_copy.iterdir()) == before  # no evaluation/ half written
    assert not list(tmp_path.glob("p.csv")) and not list(tmp_path.glob("m.*"))


@pytest.mark.parametrize("edit", [
    lambda pre: pre["mean"].__setitem__(0, "NaN"),
    lambda pre: pre["mean"].__setitem__(2, "1e999"),
    lambda pre: pre["std"].__setitem__(1, "0"),
    lambda pre: pre["std"].__setitem__(1, "-1.5"),
    lambda pre: pre["std"].__setitem__(3, "Infinity"),
])
def test_non_finite_or_zero_normalisation_statistics_are_refused_at_load(run_copy, cli, tmp_path, edit):
    pre = json.loads((run_copy / "preprocess.json").read_text())
    edit(pre)  # a string stands for the raw JSON token written below
    text = json.dumps(pre)
    for token in ("NaN", "1e999", "0", "-1.5", "Infinity"):
        text = text.replace(f'"{token}"', token)
    (run_copy / "preprocess.json").write_text(text)
    r = cli("predict", run_copy, HEART, "--out", tmp_path / "p.csv")
    assert_one_line_error(r, "preprocess.json")
    assert not (tmp_path / "p.csv").exists()


def test_a_training_loss_that_goes_non_finite_stops_before_a_checkpoint_keeps_the_weights(tmp_path):
    from biodl.engine.trainer import Trainer

    model = torch.nn.Linear(3, 2)
    data = torch.utils.data.TensorDataset(torch.randn(16, 3), torch.randint(0, 2, (16,)))
    trainer = Trainer(model, lambda out, y: out.sum() * float("nan"), lambda ps: torch.optim.SGD(ps, lr=0.1),
                      max_epochs=2, checkpoint_dir=tmp_path / "ckpt", device="cpu")
    with pytest.raises(BiodlError, match="diverged: the training loss of epoch 1 is nan"):
        trainer.fit(data)
    assert not (tmp_path / "ckpt" / "last.safetensors").exists()


def test_a_network_giving_nan_for_some_inputs_is_refused_not_called_class_0(trained_run, tmp_path, monkeypatch):
    import biodl

    predictor = biodl.load(trained_run, device="cpu")
    inferer = predictor.members[0].inferer
    original = inferer.predict_passes

    def nan_second_row(data):
        out = original(data).clone()
        out[:, 1] = float("nan")  # (passes, cases, classes)
        return out

    monkeypatch.setattr(inferer, "predict_passes", nan_second_row)
    with pytest.raises(BiodlError, match=r"NaN or infinite probabilities for 1 of 299 cases"):
        predictor.predict(pd.read_csv(HEART))


@pytest.mark.parametrize("threshold", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_conformal_threshold_is_refused_not_an_empty_set_for_every_case(run_copy, cli, tmp_path,
                                                                                      threshold):
    path = run_copy / "conformal.json"
    data = json.loads(path.read_text())
    data["threshold"] = ["__T__"]
    path.write_text(json.dumps(data).replace('"__T__"', threshold))
    assert_one_line_error(cli("predict", run_copy, HEART, "--out", tmp_path / "p.csv"), "conformal.json")
    assert_one_line_error(cli("evaluate", run_copy), "conformal.json")
    assert not (tmp_path / "p.csv").exists() and not (run_copy / "evaluation").exists()


@pytest.mark.parametrize("fault, cell", [("above one", 1.5), ("negative", -0.25), ("not summing to one", 0.2)])
def test_calibrate_refuses_validation_probabilities_that_are_not_probabilities(run_copy, cli, fault, cell):
    path = run_copy / "val_predictions.csv"
    df = pd.read_csv(path)
    p = [c for c in df.columns if c.startswith("p_")]
    df.loc[3, p[0]] = cell
    if fault != "not summing to one":
        df.loc[3, p[1]] = 1 - cell
    df.to_csv(path, index=False)
    (run_copy / "calibration.json").unlink()
    metrics = (run_copy / "metrics.json").read_bytes()
    assert_one_line_error(cli("calibrate", run_copy), "val_predictions.csv", "line 5", "not probabilities")
    assert not (run_copy / "calibration.json").exists() and (run_copy / "metrics.json").read_bytes() == metrics


def test_of_two_concurrent_calibrations_without_overwrite_one_fails(run_copy, cli, monkeypatch):
    """The existence check passes for both; the second to write finds the first's file and stops."""
    from biodl.trust import calibration

    (run_copy / "calibration.json").unlink()
    fit = calibration.fit

    def fit_then_the_other_writes(*args, **kwargs):
        cal = fit(*args, **kwargs)
        atomic_write_text(run_copy / "calibration.json", '{"written": "by the other process"}')
        return cal

    monkeypatch.setattr(calibration, "fit", fit_then_the_other_writes)
    assert_one_line_error(cli("calibrate", run_copy), "calibration.json", "exists (written by another process")
    assert json.loads((run_copy / "calibration.json").read_text()) == {"written": "by the other process"}


def test_an_exclusive_write_lets_exactly_one_of_many_threads_create_the_file(tmp_path):
    path, results = tmp_path / "calibration.json", []

    def write(i):
        try:
            atomic_write_text(path, str(i), exclusive=True)
            results.append(i)
        except BiodlError:
            pass

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and path.read_text() == str(results[0])
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]  # no temporary left behind


@pytest.mark.parametrize("token", ["NaN", "Infinity", "1e999"])
def test_nan_in_metrics_json_is_one_line_for_report_and_compare(run_copy, trained_run, cli, tmp_path, token):
    text = (run_copy / "metrics.json").read_text()
    key = next(iter(json.loads(text)))
    data = json.loads(text)
    data[key] = "__X__"
    (run_copy / "metrics.json").write_text(json.dumps(data).replace('"__X__"', token))
    report = (run_copy / "report.html").read_bytes()
    assert_one_line_error(cli("report", run_copy), "metrics.json", "not valid JSON")
    assert (run_copy / "report.html").read_bytes() == report
    assert_one_line_error(cli("compare", trained_run, run_copy, "--out", tmp_path / "c"), "metrics.json")
    assert not list(tmp_path.glob("c.*"))


def test_export_needs_overwrite_to_replace_an_export_and_checks_out_first(run_copy, cli, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an earlier export")
    assert_one_line_error(cli("export", run_copy, "--out", out), "m.onnx exists", "--overwrite")
    assert out.read_bytes() == b"an earlier export"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(cli("export", run_copy, "--out", blocker / "m.onnx"), "--out", "is a file, not a folder")
    r = cli("export", run_copy, "--out", out, "--overwrite")
    assert r.code == 0, r.err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["checkpoint"] == "best" and out.read_bytes()[:4] != b"an e"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m.json", "m.onnx", "run"]


def test_outputs_that_cannot_be_written_are_refused_before_any_work(trained_run, cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(cli("predict", trained_run, HEART, "--out", blocker / "p.csv"), "is a file, not a folder")
    assert_one_line_error(cli("compare", trained_run, trained_run, "--out", blocker / "c"), "is a file, not a folder")
    assert blocker.read_text() == "x"
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert_one_line_error(cli("predict", trained_run, HEART, "--out", locked / "p.csv"), "permission denied")


def test_strict_json_refuses_what_biodl_never_writes(tmp_path):
    from biodl.io import strict_json

    for text in ('{"a": NaN}', '{"a": -Infinity}', '{"a": 1e999}', "[" * 100_000 + "]" * 100_000):
        with pytest.raises(ValueError):
            strict_json(text)
    assert strict_json('{"a": 1e308, "b": [1, 2.5]}') == {"a": 1e308, "b": [1, 2.5]}
    assert np.isfinite(strict_json('{"a": 1e-400}')["a"])


def test_a_study_folder_given_where_a_trained_run_belongs_says_so(tmp_path, cli):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "config.yaml").write_text("name: tcga-melanoma\ncounts: null\nfolds: 5\n")
    for args in (("export", tmp_path / "study"), ("calibrate", tmp_path / "study"), ("evaluate", tmp_path / "study"),
                 ("predict", tmp_path / "study", HEART)):
        assert_one_line_error(cli(*args), "study", "'tcga-melanoma'", "keeps none for use")


@pytest.mark.parametrize("task", ["image", "segmentation"])
@pytest.mark.parametrize("std", [0.0, -0.1, float("nan"), float("inf")])
def test_an_image_or_segmentation_run_with_a_zero_or_non_finite_std_is_refused(tmp_path, task, std):
    """The example of the issue: an image run with ``std: 0`` predicted class 0 for everything."""
    from importlib import import_module

    from biodl.errors import RunDirError
    from biodl.runs import read_validated

    schema = import_module(f"biodl.tasks.{'image_data' if task == 'image' else task}").PreprocessFile
    good = {"image": {"classes": ["a", "b"], "mean": [0.5] * 3, "std": [0.2] * 3, "size": 32, "in_chans": 3,
                      "graded": False},
            "segmentation": {"channels": "green", "clahe": True, "mean": [0.5], "std": [0.2], "in_chans": 1,
                             "train": ["a"], "test": ["b"]}}[task]
    fields = set(schema.model_fields)
    good = {k: v for k, v in good.items() if k in fields}
    path = tmp_path / "preprocess.json"
    path.write_text(json.dumps(good))
    try:
        read_validated(path, schema)
    except RunDirError as exc:  # the schema needs other keys: this test only varies std
        pytest.skip(f"a valid preprocess.json of {task} needs more: {exc}")
    good["std"][0] = std
    path.write_text(json.dumps(good))  # json.dumps writes NaN/Infinity, which biodl never does
    with pytest.raises(RunDirError, match="preprocess.json"):
        read_validated(path, schema)
