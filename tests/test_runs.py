"""The run directory under attack: a failed start leaves nothing, its files are checked when
read back, output paths of the wrong kind are refused, and nothing biodl writes holds NaN."""

import json
import re

import pandas as pd
import pytest
import yaml

from tests.conftest import FAST, HEART, ROOT, assert_one_line_error
from biodl import runs

EXAMPLE = ROOT / "examples/heart_failure_mlp.yaml"


# ----------------------------------------------------------------------------- 1: a failed start


@pytest.mark.parametrize("override, fragment", [
    ("model.name=mlpp", "unknown model 'mlpp'; did you mean 'mlp'"),
    ("model.args={hiden: [8]}", "'mlp' takes no argument 'hiden'"),
    ("model.args={dropout: 2}", "dropout must be in"),
])
def test_a_start_that_fails_at_the_model_leaves_no_run_directory(cli, tmp_path, override, fragment):
    out = tmp_path / "run"
    r = cli("train", "--config", EXAMPLE, "--out", out, *FAST, "--set", override)
    assert_one_line_error(r, fragment)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no staging folder left either
    assert_one_line_error(cli("train", "--resume", "--out", out), "no such run directory")
    r = cli("train", "--config", EXAMPLE, "--out", out, *FAST)  # the same --out is free for the fixed config
    assert r.code == 0, r.err
    assert (out / "metrics.json").is_file()


def test_an_existing_empty_out_folder_is_used_and_kept_on_failure(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    assert_one_line_error(cli("train", "--config", EXAMPLE, "--out", out, *FAST, "--set", "model.name=x"),
                          "unknown model")
    assert out.is_dir() and list(out.iterdir()) == []
    assert cli("train", "--config", EXAMPLE, "--out", out, *FAST).code == 0
    assert {"config.yaml", "manifest.json", "preprocess.json", "metrics.json"} <= {p.name for p in out.iterdir()}


# ----------------------------------------------------------------------------- 8: run files checked on load


def _image_config() -> str:
    from biodl.config import build_config

    cfg = build_config({"task": "image", "data": {"dataset": "retinamnist"}})
    return yaml.safe_dump(cfg.model_dump(mode="json"))


@pytest.mark.parametrize("command", ["evaluate", "predict", "explain"])
def test_config_of_another_task_names_the_file_that_does_not_fit(cli, run_copy, command):
    (run_copy / "config.yaml").write_text(_image_config())  # an image run's config in a tabular run
    extra = [HEART] if command == "predict" else []
    r = cli(command, run_copy, *extra)
    assert_one_line_error(r, "preprocess.json", "does not fit a run of task image", "size: Field required")
    assert not (run_copy / "evaluation").exists() and not (run_copy / "predictions").exists()
    assert not (run_copy / "explain").exists()


@pytest.mark.parametrize("edit, fragment", [
    (lambda p: p.pop("features"), "features: Field required"),
    (lambda p: p.update(mean="zero"), "mean: Input should be a valid list"),
    (lambda p: p.update(std=p["std"][:3]), "one value per feature"),
    (lambda p: p.update(extra_key=1), "extra_key: Extra inputs are not permitted"),
])
@pytest.mark.parametrize("command", ["evaluate", "predict", "explain"])
def test_malformed_preprocess_json_is_one_line(cli, run_copy, edit, fragment, command):
    path = run_copy / "preprocess.json"
    pre = json.loads(path.read_text())
    edit(pre)
    path.write_text(json.dumps(pre))
    extra = [HEART] if command == "predict" else []
    assert_one_line_error(cli(command, run_copy, *extra), "preprocess.json", fragment)


def test_malformed_metrics_manifest_and_layout_keep_the_old_report(cli, run_copy, trained_run, tmp_path):
    report = (run_copy / "report.html").read_bytes()
    metrics = run_copy / "metrics.json"
    good = metrics.read_text()
    metrics.write_text(json.dumps({**json.loads(good), "test/mcc": [0.1, 0.2]}))
    assert_one_line_error(cli("report", run_copy), "metrics.json", "'test/mcc' is not a number (got a list)")
    assert_one_line_error(cli("compare", trained_run, run_copy, "--out", tmp_path / "c"), "metrics.json", "test/mcc")
    metrics.write_text(good)
    manifest = run_copy / "manifest.json"
    good = manifest.read_text()
    for bad, fragment in ((lambda m: m.update(config=[1]), "config: Input should be a valid dictionary"),
                          (lambda m: m.update(class_counts={"train": "many"}), "class_counts.train"),
                          (lambda m: m["inputs"].update(data="x.csv"), "inputs.data")):
        m = json.loads(good)
        bad(m)
        manifest.write_text(json.dumps(m))
        assert_one_line_error(cli("report", run_copy), "manifest.json", fragment)
    m = json.loads(good)
    m["inputs"]["data"] = "x.csv"
    manifest.write_text(json.dumps(m))
    assert_one_line_error(cli("evaluate", run_copy), "manifest.json", "inputs.data")
    manifest.write_text(good)
    (run_copy / "report.json").write_text(json.dumps({"sections": [{"title": "x", "items": ["../../secret.md"]}]}))
    assert_one_line_error(cli("report", run_copy), "report.json", "outside the run directory")
    assert (run_copy / "report.html").read_bytes() == report


# ----------------------------------------------------------------------------- 9: --out of the wrong kind


def test_out_that_is_a_folder_is_refused_even_with_overwrite(cli, run_copy, tmp_path):
    target = tmp_path / "predictions"
    target.mkdir()
    before = sorted(p.name for p in run_copy.rglob("*"))
    r = cli("predict", run_copy, HEART, "--out", target, "--overwrite")
    assert_one_line_error(r, str(target), "is a folder; --out takes a file path")
    r = cli("predict", run_copy, HEART, "--out", run_copy / "checkpoints", "--overwrite")
    assert_one_line_error(r, "is a folder")
    assert sorted(p.name for p in run_copy.rglob("*")) == before  # no .tmp file anywhere
    assert list(target.iterdir()) == [] and not list(tmp_path.glob(".*tmp"))
    (tmp_path / "cmp.html").mkdir()
    r = cli("compare", run_copy, run_copy, "--out", tmp_path / "cmp", "--overwrite")
    assert_one_line_error(r, "cmp.html", "is a folder")
    assert not (tmp_path / "cmp.md").exists()


def test_atomic_write_never_leaves_its_temporary_file(tmp_path):
    from biodl.errors import BiodlError
    from biodl.io import atomic_write_text

    (tmp_path / "out").mkdir()
    with pytest.raises(BiodlError, match="is a folder"):
        atomic_write_text(tmp_path / "out", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# ----------------------------------------------------------------------------- 10: undefined metrics


def test_single_class_evaluation_gives_null_and_undefined_never_nan(cli, run_copy, tmp_path):
    survivors = tmp_path / "survivors.csv"
    df = pd.read_csv(HEART)
    df[df["DEATH_EVENT"] == 0].to_csv(survivors, index=False)
    r = cli("evaluate", run_copy, "--data", survivors)
    assert r.code == 0, r.err
    ev = json.loads((run_copy / "evaluation/survivors.json").read_text())
    for key in ("roc_auc", "pr_auc", "mcc", "sensitivity", "roc_auc_ci_low", "roc_auc_ci_high"):
        assert ev[f"survivors/{key}"] is None, key
    assert ev["survivors/n"] == 203 and 0 <= ev["survivors/specificity"] <= 1 and ev["survivors/specificity"] == ev[
        "survivors/accuracy"]
    shown = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in r.out.splitlines()
             if line.count("│") >= 3}
    assert shown["roc_auc"] == shown["pr_auc"] == shown["mcc"] == "undefined" and shown["specificity"] != "undefined"
    assert "undefined: mcc, pr_auc, roc_auc, sensitivity" in r.out
    assert cli("report", run_copy).code == 0
    for path in run_copy.rglob("*"):
        if path.suffix in (".json", ".csv", ".md", ".html", ".yaml"):
            text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", path.read_text())  # figures aside
            for token in ("NaN", "Infinity", ",nan", "nan,", " nan "):
                assert token not in text, (path, token)


def test_json_writer_turns_non_finite_numbers_into_null(tmp_path):
    import numpy as np

    from biodl.io import atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32("nan"),
                                            "d": np.float64(2.0)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": [None, 1.5], "c": None, "d": 2.0}


# ----------------------------------------------------------------------------- rough edges


def test_report_command_ends_with_results(cli, run_copy):
    r = cli("report", run_copy)
    assert r.code == 0 and r.out.strip().splitlines()[-1] == f"results: {run_copy / 'report.html'}"


def test_run_resume_needs_out_and_a_study_that_trains(cli, tmp_path):
    assert_one_line_error(cli("run", "heart-failure-mlp", "--resume"), "--resume", "needs --out")
    assert_one_line_error(cli("run", "heart-failure", "--resume", "--out", tmp_path / "x"), "cannot be resumed")
    assert_one_line_error(cli("run", "heart-failure-mlp", "--resume", "--out", tmp_path / "x"), "no such run directory")


def test_run_resume_refuses_a_run_of_another_study(cli, run_copy):
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    cfg["name"] = "something-else"
    (run_copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert_one_line_error(cli("run", "heart-failure-mlp", "--resume", "--out", run_copy),
                          "is a run of 'something-else', not of study 'heart-failure-mlp'")


def test_hints_name_options_that_exist(cli, run_copy):
    r = cli("train", "--config", EXAMPLE, "--out", run_copy, *FAST)
    assert_one_line_error(r, "not empty", "--resume")
    from biodl.cli import app

    for command in ("train", "run"):  # the option the hint names exists on both commands
        params = next(c for c in app.registered_commands if c.callback.__name__ == command).callback.__code__
        assert "resume" in params.co_varnames


def test_a_table_saved_with_its_index_trains_without_it(cli, tmp_path):
    leaky = tmp_path / "sorted.csv"
    pd.read_csv(HEART).sort_values("time").to_csv(leaky)  # the saved index follows follow-up time
    r = cli("train", "--config", EXAMPLE, "--set", "data.dataset=null", "--set", f"data.path={leaky}",
            "--out", tmp_path / "run", *FAST)
    assert r.code == 0, r.err
    warned = [line for line in r.err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "column 1 (no name) holds distinct row numbers (0..298)" in warned[0]
    features = json.loads((tmp_path / "run/preprocess.json").read_text())["features"]
    assert features[0] == "age" and len(features) == 11 and not any("Unnamed" in f for f in features)
    r = cli("train", "--data", leaky, "--out", tmp_path / "img")  # a clinical table given as image data
    assert_one_line_error(r, "sorted.csv", "needs the image folder (--images", "task: tabular")


def test_explain_on_a_tabular_run_takes_no_image_files(cli, run_copy, tmp_path):
    r = cli("explain", run_copy, tmp_path / "scan.png")
    assert_one_line_error(r, "scan.png", "a tabular run is explained on its test rows; give no files")
    assert not (run_copy / "explain").exists() and not list(run_copy.glob(".explain-*"))


def test_metrics_written_with_older_names_read_in_the_vocabulary(tmp_path):
    from biodl.config import TrainerConfig

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"test/tpr": 0.5, "test/tpr_ci_low": 0.25, "human/auc": 0.9, "test/mcc": None}))
    assert runs.read_metrics(path) == {"test/sensitivity": 0.5, "test/sensitivity_ci_low": 0.25,
                                       "human/roc_auc": 0.9, "test/mcc": None}
    assert TrainerConfig(monitor="val/tnr").monitor == "val/specificity"
