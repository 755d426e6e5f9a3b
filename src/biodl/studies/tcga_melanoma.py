"""Melanoma transcriptomes (TCGA SKCM), as the workshop's genomics material (Elegant SciPy's
chapters) walks through them: library-size, RPKM and quantile normalisation; samples and genes
clustered and set against the TCGA 2015 RNA subclasses; survival by cluster and by subclass;
then deep models against classical ones under the same repeated cross-validation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from .. import runs
from ..omics.clustering import compare_partitions, hierarchical, most_variable, spectral_biclusters
from ..config import Strict, build_config, config_dict
from ..data.expression import load_cohort, log_cpm, read_gene_lengths
from ..datasets import embedded_path
from ..errors import DataError
from ..omics.expression_models import compare_classifiers, compare_survival_models, summarise, top_genes
from ..report import expression as fig
from ..report.run_report import build_report
from ..report.tables import print_table, write_table
from ..repro import finish_manifest, seed_everything, write_manifest
from ..evaluation.survival import compare_groups

__all__ = ["NAME", "NOTE", "StudyConfig", "run"]


NAME = "tcga-melanoma"

NOTE = ("the models are compared under cross-validation and none is saved for use; the RNA subclasses come from "
        "clustering the same TCGA samples, so subclass accuracy here is agreement with that clustering")


class StudyConfig(Strict):
    name: str = NAME
    counts: Path | None = Field(None, description="your counts table (genes x samples CSV) instead of the embedded")
    samples: Path | None = Field(None, description="your samples table (sample_id, patient, survival, subclass)")
    gene_lengths: Path | None = Field(None, description="CSV GeneSymbol, GeneLength (default: the embedded one)")
    time: str = "os_time_years"
    event: str = "os_event"
    subclass: str | None = Field("RNASEQ.CLUSTER_CONSENHIER", description="known classes to compare clusters with "
                                                                           "and to predict (empty: skip)")
    cluster_genes: int = Field(1500, ge=10, description="most variable genes clustered (the TCGA paper's 1,500)")
    clusters: int = Field(3, ge=2, le=12)
    model_genes: int = Field(500, ge=5, description="most variable genes of each training fold fed to the models")
    survival_genes: int = Field(200, ge=5)
    folds: int = Field(5, ge=2)
    repeats: int = Field(2, ge=1)
    ties: str = Field("efron", pattern="^(efron|breslow)$")
    mlp_epochs: int = Field(60, ge=1)
    cox_epochs: int = Field(80, ge=1)
    n_boot: int = Field(1000, ge=100)
    seed: int = 0


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    cfg = build_config({}, overrides, where=f"study {NAME}", model=StudyConfig)
    here = embedded_path("tcga-skcm")
    counts_path = Path(cfg.counts or data or here / "skcm_counts.csv.gz")
    samples_path = Path(cfg.samples or here / "skcm_samples.csv")
    lengths_path = Path(cfg.gene_lengths or here / "gene_lengths.csv")
    cohort = load_cohort(counts_path, samples_path, cfg.time, cfg.event)  # every input fault before any write
    if cfg.subclass and cfg.subclass not in cohort.samples:
        raise DataError(samples_path, f"no column {cfg.subclass!r} (subclass; --set subclass= to skip the subclass "
                                      "analysis)")
    known = cohort.samples[cfg.subclass].replace("", np.nan) if cfg.subclass else None
    cohort.check(cfg.time, cfg.event, cfg.folds, cfg.clusters, known, counts_path, samples_path)
    lengths = read_gene_lengths(lengths_path)
    run_dir = runs.prepare_run_dir(out, cfg.name, resume=False)

    def stage(folder: Path) -> dict[str, Any]:
        runs.save_config(folder, cfg)
        return write_manifest(folder, config=config_dict(cfg), seed=cfg.seed, device="cpu",
                              inputs={"counts": counts_path, "samples": samples_path},
                              extra={"left_out": {k: len(v) for k, v in cohort.dropped.items()}, "note": NOTE})

    manifest = runs.create_run_dir(run_dir, stage)
    t0, seconds = time.perf_counter(), {}
    seed_everything(cfg.seed)
    metrics = fig.write_normalisation(run_dir, cohort.counts, lengths, cohort.dropped)
    seconds["normalisation"] = time.perf_counter() - t0
    lc = log_cpm(cohort.counts)
    found = _structure(run_dir, lc, known, cfg, metrics)
    seconds["clustering"] = time.perf_counter() - t0 - sum(seconds.values())
    _survival(run_dir, cohort.samples, found, known, cfg, metrics)
    seconds["survival"] = time.perf_counter() - t0 - sum(seconds.values())
    metrics.update(_models(run_dir, lc, cohort.samples, known, cfg))
    seconds["models"] = time.perf_counter() - t0 - sum(seconds.values())
    runs.write_metrics(run_dir, metrics)
    finish_manifest(run_dir, manifest, seconds={k: round(v, 1) for k, v in {**seconds, "total": time.perf_counter()
                                                                               - t0}.items()})
    build_report(run_dir, json.loads((here / "report_layout.json").read_text()))
    return run_dir


def _structure(run_dir: Path, lc: pd.DataFrame, known: pd.Series | None, cfg: StudyConfig,
               metrics: dict[str, Any]) -> pd.Series:
    top = most_variable(lc, cfg.cluster_genes)
    clus = hierarchical(top, cfg.clusters)
    bic, _ = spectral_biclusters(top, cfg.clusters, cfg.clusters + 1, cfg.seed)
    found = clus.samples.map(lambda c: f"cluster {c}")
    notes = {"cluster": found, "bicluster": bic.map(lambda c: f"bicluster {c}")}
    if known is not None:
        notes["TCGA subclass"] = known
        for name, labels in (("hierarchical", clus.samples), ("bicluster", bic)):
            table, ari, n = compare_partitions(labels, known)
            write_table(table.reset_index(), run_dir / f"contingency_{name}", f"{name} clusters x TCGA subclasses",
                        f"Adjusted Rand index {ari:.3f} over the {n} samples with a subclass.")
            metrics[f"ari_{name}"] = ari
        fig.pca_scatter(top, known.fillna("no subclass"), "PCA of samples (most variable genes)",
                        run_dir / "pca_subclass.png")
        print_table(pd.DataFrame([{"clustering": k, "ARI vs TCGA subclasses": round(metrics[f"ari_{k}"], 3)}
                                  for k in ("hierarchical", "bicluster")]), "Clusters against the TCGA 2015 subclasses")
    fig.clustered_heatmap(top, clus.sample_link, clus.gene_link, notes, run_dir / "heatmap.png")
    metrics.update({f"cluster_size_{c}": int(n) for c, n in clus.samples.value_counts().sort_index().items()})
    return found


def _survival(run_dir: Path, samples: pd.DataFrame, found: pd.Series, known: pd.Series | None, cfg: StudyConfig,
              metrics: dict[str, Any]) -> None:
    ok = samples[cfg.time].notna()
    t, e = samples.loc[ok, cfg.time].to_numpy(float), samples.loc[ok, cfg.event].to_numpy(float)
    for name, groups in (("cluster", found), ("subclass", known)):
        if groups is None:
            continue
        g = groups.reindex(samples.index)[ok]
        have = g.notna().to_numpy()
        res = compare_groups(t[have], e[have], g[have].to_numpy())
        fig.km_figure(t[have], e[have], g[have].to_numpy(), f"Overall survival by {name} (log-rank p = "
                      f"{res['logrank_p']:.2g})", run_dir / f"km_{name}.png")
        summary = pd.DataFrame({"group": list(res["n"]), "n": list(res["n"].values()),
                                "deaths": list(res["events"].values()),
                                "median_years": [round(v, 4) if np.isfinite(v) else "not reached"
                                                 for v in res["median_years"].values()]})
        write_table(summary, run_dir / f"survival_{name}", f"Survival by {name}",
                    f"Log-rank test across groups: chi2 {res['logrank_chi2']:.2f}, p = {res['logrank_p']:.3g}. "
                    f"{int((~ok).sum())} samples without a survival time are left out.")
        write_table(res["pairwise"], run_dir / f"logrank_pairs_{name}", f"Pairwise log-rank tests ({name})")
        write_table(res["cox"], run_dir / f"cox_{name}", f"Cox model: hazard ratios against {res['reference']}")
        metrics[f"logrank_p_{name}"] = res["logrank_p"]
        metrics.update({f"median_years_{name}/{k}": v for k, v in res["median_years"].items()})
    if known is not None:
        med = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("median_years_subclass/")}
        longest = max(med, key=lambda k: (np.nan_to_num(med[k], posinf=1e9)))
        print_table(pd.DataFrame([{"subclass": k, "median OS (years)": round(v, 2)} for k, v in med.items()]),
                    f"Survival by TCGA subclass (paper: immune survives longest; here: {longest}), log-rank p = "
                    f"{metrics['logrank_p_subclass']:.3g}")


def _models(run_dir: Path, lc: pd.DataFrame, samples: pd.DataFrame, known: pd.Series | None,
            cfg: StudyConfig) -> dict[str, float]:
    flat: dict[str, float] = {}
    how = f"{cfg.repeats} x {cfg.folds}-fold stratified CV, one sample per patient; mean over folds [95% bootstrap CI]"
    if known is not None and known.notna().any():
        m = known.reindex(lc.columns).notna().to_numpy()
        classes = sorted(set(known.dropna()))
        y = known.reindex(lc.columns)[m].map(classes.index).to_numpy()
        per = compare_classifiers(lc.loc[:, m], y, classes, cfg.model_genes, cfg.folds, cfg.repeats, cfg.seed,
                                  cfg.mlp_epochs)
        table, f = summarise(per, {"mlp": "MLP (biodl engine)", "logistic": "multinomial logistic regression"},
                             ["macro_f1", "balanced_accuracy", "roc_auc"], cfg.n_boot, cfg.seed)
        write_table(per, run_dir / "subclass_folds")
        title = "RNA subclass from expression (roc_auc: the macro one-vs-rest mean)"
        write_table(table, run_dir / "subclass_models", title, how)
        print_table(table, f"{title} ({how})")
        write_table(top_genes(lc.loc[:, m], y, None, None, cfg.model_genes, cfg.seed, cfg.mlp_epochs, classes),
                    run_dir / "subclass_genes", "Genes the subclass models lean on")
        flat.update({f"subclass/{k}": v for k, v in f.items()})
    ok = samples[cfg.time].reindex(lc.columns).notna().to_numpy()
    t, e = samples[cfg.time].to_numpy(float)[ok], samples[cfg.event].to_numpy(float)[ok]
    per = compare_survival_models(lc.loc[:, ok], t, e, cfg.survival_genes, cfg.folds, cfg.repeats, cfg.seed,
                                  cfg.cox_epochs, cfg.ties)
    table, f = summarise(per, {"neural_cox": f"neural Cox (DeepSurv-style, {cfg.ties} ties)",
                               "penalised_cox": "ridge-penalised Cox (lifelines)"}, ["c_index"], cfg.n_boot, cfg.seed)
    write_table(per, run_dir / "survival_folds")
    write_table(table, run_dir / "survival_models", "Overall survival from expression (Harrell's C)", how)
    print_table(table, f"Survival from expression ({how})")
    write_table(top_genes(lc.loc[:, ok], None, t, e, cfg.survival_genes, cfg.seed, cfg.cox_epochs, ties=cfg.ties),
                run_dir / "survival_genes", "Genes the survival models lean on")
    flat.update({f"survival/{k}": v for k, v in f.items()})
    return flat
