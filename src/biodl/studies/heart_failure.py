"""Heart-failure survival prediction: a replication of Chicco & Jurman 2020 (BMC Med Inform
Decis Mak 20:16) on the embedded records, side by side with the paper's Tables 4 and 11.

Follow-up ``time`` is excluded from every model but the Table 11 variant: a patient who dies
early has a short follow-up, so the column leaks the outcome.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from .. import runs
from ..config import Strict, build_config, config_dict
from ..data import numeric_columns, read_csv
from ..datasets import embedded_path
from ..errors import DataError
from ..tasks.holdout import METRICS, HoldoutResult, Method, conformal_holdout, conformal_summary, forest_inspect
from ..tasks.holdout import holdout_splits, repeated_holdout
from ..models.classical import CLASSIFIERS, logistic_regression, random_forest
from ..evaluation.ranking import borda_count, ranks_from_scores
from ..report import boxplot_by_feature, borda_bar, distributions_by_outcome, roc_pr_bands, write_table
from ..report.figures import reliability_diagram
from ..report.run_report import build_report
from ..report.tables import compare_with_published, print_table, summary_table
from ..repro import finish_manifest, write_manifest
from ..evaluation.stats import describe_by_outcome

__all__ = [
    "NAME", "TARGET", "BINARY", "NUMERIC", "CLINICAL", "TWO", "TOP2", "FROM_LABELS", "LEAK", "StudyConfig",
    "config", "load_records", "run",
]


NAME = "heart-failure"
TARGET = "DEATH_EVENT"
BINARY = ["anaemia", "diabetes", "high_blood_pressure", "sex", "smoking"]
NUMERIC = ["age", "creatinine_phosphokinase", "ejection_fraction", "platelets", "serum_creatinine", "serum_sodium"]
CLINICAL = ["age", "anaemia", "creatinine_phosphokinase", "diabetes", "ejection_fraction", "high_blood_pressure",
            "platelets", "serum_creatinine", "serum_sodium", "sex", "smoking"]
TWO = ["serum_creatinine", "ejection_fraction"]
TOP2 = "Random forests (top 2 chosen on each training split)"
#: methods whose ROC and PR AUC the paper computed from 0/1 predictions (its ROC AUC equals
#: (TP rate + TN rate) / 2 for exactly these); we set our label-based areas beside those
FROM_LABELS = {m: {"roc_auc": "roc_auc_labels", "pr_auc": "pr_auc_labels"} for m in ("dt", "linreg", "onerule", "nb",
                                                                                     "knn")}
LEAK = "follow-up time is excluded: it leaks the outcome (patients who die early have short follow-up)"


class StudyConfig(Strict):
    name: str = NAME
    n_splits: int = Field(100, ge=2, description="stratified 80/20 splits; split i uses seed i")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    n_boot: int = Field(1000, ge=100, description="bootstrap resamples for the 95% CIs")
    seed: int = Field(0, ge=0, description="seed of the bootstrap")
    n_jobs: int = Field(-1, description="worker processes (-1: all cores); results do not depend on it")
    permutation_repeats: int = Field(5, ge=1)
    borda_top_k: int | None = Field(None, ge=1, le=11, description="Borda points for the top k only")
    net_epochs: int = Field(30, ge=1, description="epochs of the PyTorch logistic net")
    conformal_alpha: float = Field(0.1, gt=0, lt=1, description="error rate of the random forest's conformal "
                                                                "prediction sets")
    progress: bool = True


def config(overrides: list[str] | None = None) -> StudyConfig:
    return build_config({}, overrides, where=f"study {NAME}", model=StudyConfig)


def load_records(path: Path) -> pd.DataFrame:
    """The 13 columns, validated (numbers, no blanks, 0/1 where binary, two outcome classes)."""
    df = read_csv(path)
    cols = [*CLINICAL, "time", TARGET]
    values = numeric_columns(df, cols, path, binary=[*BINARY, TARGET])
    out = pd.DataFrame(values, columns=cols)
    if out[TARGET].nunique() < 2:
        raise DataError(path, f"column '{TARGET}': a single class ({int(out[TARGET].iloc[0])}); two are needed")
    if out[TARGET].value_counts().min() < 10:
        raise DataError(path, f"column '{TARGET}': fewer than 10 rows in a class; too few for 80/20 splits")
    return out


def _methods(cfg: StudyConfig) -> list[Method]:
    from ..tasks.tabular import fit_predict_net

    idx = {c: i for i, c in enumerate([*CLINICAL, "time_month"])}
    clinical, two = [idx[c] for c in CLINICAL], [idx[c] for c in TWO]
    methods = [Method(k, label, f, clinical) for k, (label, f) in CLASSIFIERS.items()]
    # also gives rf_2f and rf_top2_train
    methods[0].inspect = forest_inspect(random_forest, sorted(CLINICAL.index(c) for c in TWO), cfg.permutation_repeats)
    for key in ("gb", "svm_rbf"):
        methods.append(Method(f"{key}_2f", f"{CLASSIFIERS[key][0]} (SC + EF)", CLASSIFIERS[key][1], two))
    methods.append(Method("logistic_net_2f", "PyTorch logistic net (SC + EF)", None, two, fit_predict=lambda a, b, c, s:
                          fit_predict_net(a, b, c, s, epochs=cfg.net_epochs)))
    methods.append(Method("lr_time_2", "Logistic regression (EF, SC & follow-up month)", logistic_regression,
                          [idx["ejection_fraction"], idx["serum_creatinine"], idx["time_month"]]))
    methods.append(Method("lr_time_all", "Logistic regression (all features + follow-up month)", logistic_regression,
                          [*clinical, idx["time_month"]]))
    return methods


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    cfg = config(overrides)
    path = Path(data) if data is not None else embedded_path("heart-failure")
    df = load_records(path)  # every input fault is raised before anything is written
    run_dir = runs.prepare_run_dir(out, cfg.name, resume=False)

    def stage(folder: Path) -> dict[str, Any]:
        runs.save_config(folder, cfg)
        return write_manifest(folder, config=config_dict(cfg), seed=cfg.seed, device="cpu", inputs={"data": path},
                              extra={"note": LEAK, "split": f"{cfg.n_splits} stratified splits", "classes": [
                                  "survived (0)", "died (1)"], "class_counts": {"all records": np.bincount(
                                      df[TARGET].to_numpy(int)).tolist()}})

    manifest = runs.create_run_dir(run_dir, stage)
    t0 = time.perf_counter()
    y = df[TARGET].to_numpy(int)
    x = np.column_stack([df[CLINICAL].to_numpy(float), np.ceil(df["time"].to_numpy(float) / 30.0)])
    splits = holdout_splits(y, cfg.n_splits, cfg.test_fraction)
    results = repeated_holdout(_methods(cfg), x, y, splits, cfg.n_jobs, cfg.progress)
    for key, label in (("rf_2f", "Random forests (SC + EF)"), ("rf_top2_train", TOP2)):
        results[key] = HoldoutResult.from_extras(results["rf"], key, label)
    summaries = {k: r.summary(cfg.n_boot, cfg.seed) for k, r in results.items()}
    sets = conformal_holdout(Method("rf", CLASSIFIERS["rf"][0], random_forest, list(range(len(CLINICAL)))), x, y,
                             splits, cfg.conformal_alpha, n_jobs=cfg.n_jobs)
    here = embedded_path("heart-failure").parent
    paper = json.loads((here / "paper_results.json").read_text())
    shutil.copyfile(here / "PROTOCOL_DIFFERENCES.md", run_dir / "protocol_differences.md")
    _tables(run_dir, df, results, summaries, paper, cfg)
    _figures(run_dir, df, results, summaries, splits)
    flat = {f"{m}/{k}": v for m, s in summaries.items() for k, v in s.items()}
    flat.update(_conformal_table(run_dir, sets, cfg))
    runs.write_metrics(run_dir, flat)
    finish_manifest(run_dir, manifest, seconds={"total": round(time.perf_counter() - t0, 1)})
    build_report(run_dir, json.loads((here / "report_layout.json").read_text()))
    return run_dir


def _tables(run_dir: Path, df, results, summaries, paper, cfg) -> None:
    write_table(describe_by_outcome(df, TARGET, NUMERIC, BINARY), run_dir / "descriptive",
                "Clinical features by outcome", "Mann-Whitney U for numeric, chi-squared for binary features.")
    for tab in ("table4", "table11"):
        long, wide = compare_with_published(summaries, paper[tab]["rows"], METRICS, FROM_LABELS)
        note = LEAK if tab == "table4" else "LEAKING: these models use the follow-up time; shown only beside Table 11."
        write_table(long, run_dir / f"{tab}_long")
        write_table(wide, run_dir / f"{tab}_comparison", paper[tab]["title"], f"{note} Ours: mean [95% bootstrap CI] "
                    f"over {cfg.n_splits} splits. *: areas from 0/1 predictions, as the paper computed them for "
                    f"these methods. Each difference from the paper: protocol_differences.md. "
                    f"Source: {paper[tab]['source']}")
        if tab == "table4":
            print_table(wide[["method", "MCC", "paper MCC", "F1 score", "paper F1 score", "ROC AUC", "paper ROC AUC",
                              "paper inside our CI"]], f"{paper[tab]['title']} — ours vs paper ({LEAK})")
    two = ["rf_2f", "gb_2f", "svm_rbf_2f", "logistic_net_2f", "rf_top2_train", "rf"]
    write_table(summary_table({k: results[k].method.label for k in two}, summaries, METRICS), run_dir / "two_features",
                "Two-feature models",
                "SC + EF were chosen by the paper on all the data (data snooping); the 'top 2 chosen on each training "
                "split' row is the honest protocol; the last row uses all 11 clinical features.")
    for kind in ("impurity", "permutation"):
        ranks = ranks_from_scores(np.array([e[kind] for e in results["rf"].extras]))
        write_table(borda_count(ranks, CLINICAL, cfg.borda_top_k), run_dir / f"borda_{kind}",
                    f"Borda ranking of random-forest {kind} importance over {cfg.n_splits} splits")


def _conformal_table(run_dir: Path, sets: pd.DataFrame, cfg: StudyConfig) -> dict[str, float]:
    table, flat = conformal_summary(sets, ("survives", "dies"), cfg.n_boot, cfg.seed)
    write_table(table, run_dir / "conformal", f"Random forest: conformal prediction sets at alpha = "
                f"{cfg.conformal_alpha}", f"Each of the {cfg.n_splits} splits: the forest is fitted on 75% of the "
                "training rows, the sets are calibrated on the other 25% and scored on the test rows (the share of "
                f"test patients whose set holds their outcome should be at least {1 - cfg.conformal_alpha:.2f}). A "
                "set of both outcomes says the model cannot tell; Mondrian sets cover each outcome, the rarer deaths "
                "too.")
    return {f"conformal/{k}": v for k, v in flat.items()}


def _figures(run_dir: Path, df, results, summaries, splits) -> None:
    extras = results["rf"].extras
    for kind, xlabel in (("impurity", "mean decrease in impurity"), ("permutation", "MCC drop when permuted")):
        values = np.array([e[kind] for e in extras])
        boxplot_by_feature(values, CLINICAL, f"Random forest: {kind} importance", xlabel,
                           run_dir / f"importance_{kind}.png")
        borda_bar(pd.read_csv(run_dir / f"borda_{kind}.csv"), f"Borda count ({kind})", run_dir / f"borda_{kind}.png")
    best = max(CLASSIFIERS, key=lambda k: summaries[k]["mcc_mean"])
    r = results[best]
    roc_pr_bands(r.y_true, r.scores, f"{r.method.label}: best mean MCC", run_dir / "roc_pr_best.png")
    y, p = np.concatenate(r.y_true), np.concatenate(r.scores)
    if p.min() >= 0 and p.max() <= 1:  # probabilities (not an SVM's decision values)
        patients = np.concatenate([test for _, test in splits])  # a patient is tested in many splits: resample patients
        reliability_diagram(y, p, "death rate", f"{r.method.label}, all splits", run_dir / "calibration_best.png",
                            patients)
    distributions_by_outcome(df, TARGET, NUMERIC, run_dir / "distributions.png")
