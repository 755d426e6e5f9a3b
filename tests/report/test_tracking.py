"""``--track mlflow``: a run (and a search with its trials nested) logged to MLflow, read back with
MLflow's own client: the flattened config as parameters, the per-epoch metrics as histories, the
final metrics, the artefacts; without the extra installed, one line naming it."""

import csv
import json
import sys

import pytest
import yaml

from tests.conftest import ROOT, assert_one_line_error

pytest.importorskip("mlflow")
MLP = ROOT / "examples" / "heart_failure_mlp.yaml"
FAST = ["--set", "trainer.epochs=6", "--set", "trainer.progress=false", "--set", "n_boot=200"]


def _client(folder):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


def test_a_run_is_logged_with_params_histories_metrics_and_artefacts(tmp_path, cli):
    r = cli("train", "--config", MLP, "--out", tmp_path / "run", "--track", "mlflow", *FAST)
    assert r.code == 0, r.err
    run_dir = tmp_path / "run"
    client = _client(run_dir)
    (found,) = client.search_runs([client.get_experiment_by_name("biodl").experiment_id])
    assert found.info.run_id in r.out and found.info.status == "FINISHED"
    params = found.data.params
    assert params["optimizer.lr"] == "0.003" and params["model.args.hidden"] == "[32, 16]"
    assert params["data.dataset"] == "heart-failure" and params["task"] == "tabular"
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    history = client.get_metric_history(found.info.run_id, "val/loss")
    assert [(h.step, round(h.value, 6)) for h in sorted(history, key=lambda h: h.step)][: len(rows)] == [
        (int(row["epoch"]), round(float(row["val/loss"]), 6)) for row in rows]
    final = json.loads((run_dir / "metrics.json").read_text())
    assert found.data.metrics["test/mcc"] == pytest.approx(final["test/mcc"])
    assert found.data.metrics["test/mcc_ci_low"] == pytest.approx(final["test/mcc_ci_low"])
    names = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"report.html", "model_card.md", "metrics.json", "config.yaml"} <= names


def test_a_search_is_a_parent_run_with_its_trials_nested(tmp_path, cli):
    pytest.importorskip("optuna")
    raw = yaml.safe_load((ROOT / "examples" / "heart_failure_tune.yaml").read_text())
    raw["trainer"].update(epochs=6, early_stopping_patience=3)
    raw["n_boot"] = 200
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    r = cli("tune", tmp_path / "t.yaml", "--trials", "3", "--out", tmp_path / "out", "--track", "mlflow")
    assert r.code == 0, r.err
    client = _client(tmp_path / "out")
    runs = client.search_runs([client.get_experiment_by_name("biodl").experiment_id])
    (parent,) = [x for x in runs if x.data.tags.get("biodl.kind") == "tune"]
    nested = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(nested) == 5  # three trials, the best, the default
    assert parent.data.params["search.optimizer.lr"] and parent.data.metrics["tune/trials"] == 3
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert parent.data.metrics["tune/best_value"] == pytest.approx(summary["best_value"])
    trials = [x for x in nested if x.data.params.get("trial") == "True"]
    assert len(trials) == 3 and all(not any(k.startswith("test/") for k in x.data.metrics) for x in trials)


def test_without_the_extras_one_line_names_them(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    assert_one_line_error(cli("train", "--config", MLP, "--out", tmp_path / "run", "--track", "mlflow", *FAST),
                          "pip install 'biodl[track]'")
    assert not (tmp_path / "run").exists()
    assert_one_line_error(cli("train", "--config", MLP, "--out", tmp_path / "run", "--track", "wandb"),
                          "unknown tracker 'wandb'")
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert_one_line_error(cli("tune", ROOT / "examples" / "heart_failure_tune.yaml", "--out", tmp_path / "t"),
                          "pip install 'biodl[tune]'")
    assert not (tmp_path / "t").exists()
