"""Experiment tracking in MLflow (``--track mlflow``, #33), from the run directory itself.

A finished run is logged as one MLflow run: its parameters (the resolved config, flattened to
dotted keys), its per-epoch metrics (``metrics.csv``, step = epoch), its final metrics
(``metrics.json``: test metrics with their CI bounds) and its artefacts (``report.html``,
``model_card.md``, ``metrics.json``, ``config.yaml``). A k-fold or ensemble parent's children,
and a search's trials (``biodl tune``), are nested runs under their parent's. Logging from the
files rather than from the training loop means a resumed run, or one trained without tracking,
can be logged the same way afterwards, and training never waits on a tracking server.

MLflow is optional (``pip install 'biodl[track]'``). The default store is
``sqlite:///RUN_DIR/mlflow.db`` with artefacts in ``RUN_DIR/mlartifacts``; ``--track-uri`` names
another (a server, another database).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

from .. import runs
from ..errors import ConfigError

__all__ = ["EXPERIMENT", "ARTEFACTS", "mlflow_client", "default_uri", "flatten", "log_run", "log_search"]

EXPERIMENT = "biodl"
ARTEFACTS = ("report.html", "model_card.md", "metrics.json", "config.yaml")


def mlflow_client(uri: str | None):
    """An ``MlflowClient`` for ``uri`` (None: just check MLflow is installed); its absence is one
    ConfigError naming the extra."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ConfigError("--track mlflow", "needs MLflow: pip install 'biodl[track]'") from None
    for name in ("mlflow", "alembic"):  # schema migrations of a new store are not the user's news
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri) if uri is not None else None


def default_uri(folder: Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / 'mlflow.db'}"


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys -> text (lists stay whole)."""
    if not isinstance(tree, dict):
        return {prefix: str(tree)}
    out: dict[str, str] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _experiment(client, folder: Path, uri_given: bool) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    where = None if uri_given else (Path(folder).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=where)


def _metrics(run_dir: Path) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = []
    if (run_dir / runs.METRICS_CSV).is_file():
        with open(run_dir / runs.METRICS_CSV, newline="") as f:
            for row in csv.DictReader(f):
                step = int(float(row.get("epoch") or 0))
                for k, v in row.items():
                    try:
                        value = float(v)
                    except (TypeError, ValueError):
                        continue
                    if k != "epoch" and math.isfinite(value):
                        out.append(Metric(k, value, now, step))
    if (run_dir / runs.METRICS).is_file():
        final = runs.read_metrics(run_dir / runs.METRICS)
        step = int(final.get("epochs_trained") or 0)
        out += [Metric(k, float(v), now, step) for k, v in final.items() if v is not None and math.isfinite(v)]
    return out


def log_run(run_dir: str | Path, uri: str | None = None, parent: str | None = None, client=None,
            experiment: str | None = None) -> str:
    """Log the finished run ``run_dir`` (and its folds or members, nested) to MLflow; returns its
    MLflow run id. ``parent``: the MLflow run it nests under."""
    from mlflow.entities import Param

    run_dir = Path(run_dir)
    uri_given = uri is not None
    uri = uri or default_uri(run_dir)
    client = client or mlflow_client(uri)
    experiment = experiment or _experiment(client, run_dir, uri_given)
    config = _config(run_dir)
    tags = {"biodl.run_dir": str(run_dir.resolve()), **({"mlflow.parentRunId": parent} if parent else {})}
    run = client.create_run(experiment, run_name=str(config.get("name", run_dir.name)), tags=tags)
    rid = run.info.run_id
    params = [Param(k[:250], v[:6000]) for k, v in flatten(config).items()]
    metrics = _metrics(run_dir)
    for i in range(0, max(len(params), len(metrics), 1), 100):
        client.log_batch(rid, metrics=metrics[i:i + 100], params=params[i:i + 100])
    for name in ARTEFACTS:
        if (run_dir / name).is_file():
            client.log_artifact(rid, str(run_dir / name))
    for child in sorted([*run_dir.glob("folds/fold*"), *run_dir.glob("members/member*")]):
        if (child / runs.CONFIG).is_file():
            log_run(child, uri, rid, client, experiment)
    client.set_terminated(rid, "FINISHED" if (run_dir / runs.METRICS).is_file() else "KILLED")
    return rid


def _config(run_dir: Path) -> dict[str, Any]:
    import yaml

    path = run_dir / runs.CONFIG
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def log_search(out: str | Path, uri: str | None = None) -> str:
    """A ``biodl tune`` folder: the study as a parent run (the search space, the best values, the
    trials table and history as artefacts), its trials, the best and the default run nested."""
    from mlflow.entities import Metric, Param

    out = Path(out)
    uri_given = uri is not None
    uri = uri or default_uri(out)
    client = mlflow_client(uri)
    experiment = _experiment(client, out, uri_given)
    settings, summary = runs.read_json(out / "tune.json"), runs.read_json(out / "summary.json")
    run = client.create_run(experiment, run_name=f"tune {settings['config'].get('name', out.name)}",
                            tags={"biodl.run_dir": str(out.resolve()), "biodl.kind": "tune"})
    rid = run.info.run_id
    params = [Param(f"search.{k}", str(v)[:6000]) for k, v in settings["config"].get("search", {}).items()]
    params += [Param(f"best.{k}", str(v)[:6000]) for k, v in summary["best"].items()]
    params += [Param(k, str(settings[k])) for k in ("trials", "metric", "mode", "seed")]
    now = int(time.time() * 1000)
    metrics = [Metric(f"tune/{k}", float(summary[k]), now, 0) for k in
               ("best_value", "trials", "pruned", "epochs_trained", "epoch_budget")]
    client.log_batch(rid, metrics=metrics, params=params)
    for name in ("trials.csv", "best.yaml", "summary.json", "best/tuning_history.png"):
        if (out / name).is_file():
            client.log_artifact(rid, str(out / name))
    for child in [*sorted(out.glob("trials/trial*")), out / "best", out / "default"]:
        if (child / runs.CONFIG).is_file():
            log_run(child, uri, rid, client, experiment)
    client.set_terminated(rid, "FINISHED")
    return rid
