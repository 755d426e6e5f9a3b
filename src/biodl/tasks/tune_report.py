"""The end of a ``biodl tune`` search: ``best.yaml``, the best config trained and tested once
beside the untuned one, and the Tuning section of the best run's report (history, importances,
trials, tuned vs default), plus ``OUT/summary.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import runs
from ..config import build_config, dump_config
from ..errors import RunDirError
from ..io import atomic_write_json, atomic_write_text
from ..report.tables import write_table
from .search import Param, overrides_of

__all__ = ["finish", "history_figure", "trials_table", "write_best_yaml", "COMPARED"]

#: the test metrics set side by side for the tuned and the default config (those the task logs)
COMPARED = ("mcc", "roc_auc", "balanced_accuracy", "f1", "accuracy")


def _once(train, config, where: Path) -> Path:
    """Train ``config`` into ``where`` unless it finished there before (a resumed search)."""
    if (where / runs.METRICS).is_file():
        return where
    return train(config, where, resume=(where / runs.CONFIG).is_file()).run_dir


def history_figure(table: pd.DataFrame, metric: str, mode: str, path: Path) -> None:
    """Each trial's validation value (pruned: its last report, grey), and the best so far."""
    from ..report.figures import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(7, 3.6))
    done = table[table["state"] == "complete"]
    cut = table[table["state"] == "pruned"]
    ax.scatter(done["trial"], done["value"], s=22, color="#1f77b4", label="complete", zorder=3)
    ax.scatter(cut["trial"], cut["value"], s=22, marker="x", color="#999999", label="pruned (last report)", zorder=2)
    best = done.sort_values("trial")["value"]
    best = best.cummin() if mode == "min" else best.cummax()
    ax.step(done.sort_values("trial")["trial"], best, where="post", color="#d62728", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title("Optimisation history (validation only)")
    ax.legend(frameon=False, fontsize=8)
    save_figure(fig, path, tight_layout=True)


def _importances(study) -> pd.DataFrame | None:
    """Optuna's parameter importances (fANOVA) over the complete trials; None when they cannot be had."""
    import optuna

    try:
        found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):
        return None
    return pd.DataFrame([{"setting": k, "importance": round(v, 3)} for k, v in found.items()])


def _cell(m: dict[str, Any], key: str) -> str:
    v, lo, hi = m.get(key), m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    if v is None or not math.isfinite(v):
        return ""
    return f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")


def finish(study, raw: dict[str, Any], space: list[Param], s: dict[str, Any], out: Path, train) -> Path:
    """best.yaml, OUT/best and OUT/default, the tables and figure, the report section; -> OUT/best."""
    from ..report.run_report import build_report

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise RunDirError(out, "no trial finished (all pruned or failed); widen the ranges or give more trials")
    values = study.best_trial.user_attrs["values"]
    write_best_yaml(out, raw, values, s["source"])
    best = _once(train, build_config(raw, overrides_of(values), where=s["source"]), out / "best")
    default = _once(train, build_config(raw, [], where=s["source"]), out / "default")
    max_epochs = int(build_config(raw, [], where=s["source"]).trainer.epochs)
    table = trials_table(study, space, max_epochs)
    write_table(table, out / "trials", f"Trials ({s['metric']} on validation; pruned: the last value reported)")
    shown = table.assign(**{p.key: table[p.key].map(lambda v: f"{v:.3g}" if isinstance(v, float) else v)
                            for p in space if p.kind != "choice"})  # 1e-4 is not 0.000
    write_table(shown, best / "tuning_trials", f"Trials ({s['metric']} on validation; pruned: its last report)")
    history_figure(table, s["metric"], s["mode"], best / "tuning_history.png")
    items = ["tuning_history.png"]
    importance = _importances(study)
    if importance is not None:
        write_table(importance, best / "tuning_importance", "Parameter importances (fANOVA over the complete trials)")
        items.append("tuning_importance")
    b, d = (runs.read_metrics(p / runs.METRICS) for p in (best, default))
    rows = []
    for label, m in (("default (the config as given)", d), ("tuned (best.yaml)", b)):
        row: dict[str, Any] = {"config": label, f"{s['metric']} (validation)": m.get(s["metric"])}
        row.update({f"test {k}": _cell(m, f"test/{k}") for k in COMPARED if f"test/{k}" in b})
        rows.append(row)
    write_table(pd.DataFrame(rows), best / "tuned_vs_default", "Tuned against default: each trained once, tested "
                "once after the search", "95% CIs by bootstrap; the search itself never read the test split.")
    items += ["tuned_vs_default", "tuning_trials"]
    epochs = int(table["epochs"].sum())
    pruned = table[table["state"] == "pruned"]
    summary = {"trials": int(len(table)), "complete": int((table["state"] == "complete").sum()),
               "pruned": int(len(pruned)), "epochs_trained": epochs, "epoch_budget": int(len(table) * max_epochs),
               # a pruned trial would have run about as long as the complete ones did (early stopping included)
               "epochs_saved_by_pruning": int(np.clip(table.loc[table["state"] == "complete", "epochs"].median()
                                                      - pruned["epochs"], 0, None).sum()), "metric": s["metric"],
               "best_trial": int(study.best_trial.number), "best_value": float(study.best_value),
               "best": values, "seconds": {k: float(np.round(v, 1)) for k, v in _seconds(out).items()}}
    atomic_write_json(out / "summary.json", summary)
    text = (f"{summary['trials']} trials ({summary['pruned']} pruned by the median rule), searched on "
            f"{s['metric']} of the validation split only; {epochs} of a budget of {summary['epoch_budget']} "
            f"epochs were trained (early stopping and pruning; pruning alone saved about "
            f"{summary['epochs_saved_by_pruning']}, had each pruned trial run as long as the median complete one). "
            f"The best trial (#{summary['best_trial']}) was retrained as this run and tested once.")
    layout = runs.read_json(best / runs.LAYOUT) if (best / runs.LAYOUT).is_file() else {"sections": []}
    layout["sections"] = [x for x in layout.get("sections", []) if x.get("title") != "Tuning"]
    layout["sections"].insert(0, {"title": "Tuning", "text": text, "items": items})
    build_report(best, layout)
    return best


def _seconds(out: Path) -> dict[str, float]:
    """Wall seconds the trials, the best run and the default run took (their manifests)."""
    out_s: dict[str, float] = {"trials": 0.0}
    for m in sorted((out / "trials").glob("trial*/manifest.json")):
        out_s["trials"] += float((runs.read_json(m).get("seconds") or {}).get("total", 0.0))
    for name in ("best", "default"):
        if (out / name / runs.MANIFEST).is_file():
            out_s[name] = float((runs.read_manifest(out / name).get("seconds") or {}).get("total", 0.0))
    return out_s


def best_config_text(raw: dict[str, Any], values: dict[str, Any], where: str) -> str:
    """``best.yaml``: the config with the best trial's values, every default written out."""
    return dump_config(build_config(raw, overrides_of(values), where=where))


def write_best_yaml(out: Path, raw: dict[str, Any], values: dict[str, Any], where: str) -> Path:
    path = out / "best.yaml"
    atomic_write_text(path, "# the best trial's settings (biodl tune); train it with biodl train --config best.yaml\n"
                      + best_config_text(raw, values, where))
    return path


def trials_table(study, space: list[Param], max_epochs: int) -> pd.DataFrame:
    """One row per finished trial: number, state, value, epochs, each searched setting."""
    rows = []
    for t in study.trials:
        if t.state.name not in ("COMPLETE", "PRUNED"):
            continue
        values = t.user_attrs.get("values", {})
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value if t.value is not None else
                     (list(t.intermediate_values.values())[-1] if t.intermediate_values else None),
                     "epochs": t.user_attrs.get("epochs", max_epochs),
                     **{p.key: json.dumps(values[p.key]) if isinstance(values.get(p.key), list) else values.get(p.key)
                        for p in space}})
    return pd.DataFrame(rows)
