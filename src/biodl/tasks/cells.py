"""Single-cell classification (``task: cells``), e.g. which cell line (or type) a cell is: counts
(cells x genes) -> quality filter -> preprocessing fitted on the training cells only
(:mod:`biodl.omics.cells`) -> an MLP -> test metrics with bootstrap CIs (resampling groups, e.g.
plates, where the data has them).

The network's input is each cell's log-normalised counts over the run's gene *panel* (every gene
id of the training data: a list, no values), so new data of another gene set is aligned by gene id
once, and a k-fold parent's folds, each with genes of its own choosing, take the same input. The
fitted gene choice, scaling and PCA are the first layer of the network (:class:`CellInput`),
saved with its weights. ``preprocess.json`` holds the classes, the panel and the preprocessing
settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from .. import runs
from ..config import CellsRunConfig, Strict
from ..data.cells import CellCounts, load_cells
from ..data.splits import kfold_splits
from ..datasets import embedded_path
from ..engine.distributed import is_main_process
from ..engine.inferer import Inferer, resolve_device
from ..errors import ConfigError, DataError
from ..evaluation import multiclass_metrics, multiclass_scores
from ..evaluation.scores import per_class_f1
from ..models import create_model
from ..omics.cells import CellInput, CellPreprocess, CellRows, check_present, panel_matrix, quality
from ..report.predictions import save_predictions
from ..repro import seed_everything
from .common import (Run, SoftmaxEnd, Stopwatch, best_predictions, class_weights, finish_trial, make_trainer,
                     refuse_overwrite, run_path, score_predictions, start_run, weighted_cross_entropy, without_test,
                     write_results)
from .trust import referral, trust, trust_of, uncertainty_columns

__all__ = ["PRESETS", "PreprocessFile", "CellData", "sources", "load_data", "split", "preprocessor", "network", "train",
           "evaluate", "cell_scores", "CellsEnd", "END"]

#: the embedded data sets: their files and the columns that label, group and select their cells
PRESETS: dict[str, dict[str, Any]] = {
    "cellbench": {"counts": "*.count.csv.gz", "metadata": "*.metadata.csv.gz", "label": "cell_line_demuxlet",
                  "group": "batch", "only": {"demuxlet_cls": ["SNG"]}},
}


class PreprocessFile(Strict):
    """``preprocess.json`` of a cells run: the classes, the gene panel the network reads, how
    new cells are normalised and checked, and the genes the model uses."""

    classes: list[str] = Field(min_length=2)
    panel: list[str] = Field(min_length=1)
    label: str
    target_sum: float = Field(gt=0)
    normalised: bool = False
    min_present: float = Field(gt=0, le=1)
    genes: list[str] = Field(default_factory=list, description="the genes the network reads (a parent: its folds')")
    n_pcs: int = Field(0, ge=0)
    clip: float | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    folds: int | None = Field(None, ge=2)


class CellData:
    """The run's cells after the quality filter: ``cells`` (those trained and tested on), their
    ``labels`` (N,) and ``groups`` (N,) or None, the ``classes``; ``others``, the cells outside
    ``data.only`` (e.g. doublets), kept for scoring; ``counts``, how many each step left."""

    def __init__(self, cells: CellCounts, labels: np.ndarray, classes: list[str], groups: np.ndarray | None,
                 others: CellCounts | None, counts: dict[str, int], label: str, sources: list[Path]) -> None:
        self.cells, self.labels, self.classes, self.groups = cells, labels, classes, groups
        self.others, self.counts, self.label, self.sources = others, counts, label, sources


def sources(config: CellsRunConfig) -> tuple[list[Path], list[Path] | None, str, str | None, dict | None]:
    """(count files, metadata files, label column, group column, only) of the run's data."""
    d = config.data
    if d.dataset is None:
        return list(d.path), d.metadata, d.label, d.group, d.only
    preset, root = PRESETS[d.dataset], embedded_path(d.dataset)
    return (sorted(root.glob(preset["counts"])), sorted(root.glob(preset["metadata"])), d.label or preset["label"],
            d.group or preset["group"], preset["only"] if d.only is None else d.only)


def _column(cells: CellCounts, name: str, where: Any, what: str) -> np.ndarray:
    if name not in cells.obs.columns:
        from ..data.tabular import closest_column

        hint = closest_column(name, list(map(str, cells.obs.columns)))
        raise DataError(where, f"no {what} column {name!r} in the cell metadata{hint} (columns: "
                               f"{', '.join(map(str, cells.obs.columns[:12]))})")
    values = cells.obs[name].astype(str).to_numpy()
    empty = np.flatnonzero((values == "") | (values == "nan"))
    if len(empty):
        raise DataError(where, f"{len(empty)} cells have no {what} ({name}), e.g. {cells.cells[empty[0]]!r}")
    return values


def load_data(config: CellsRunConfig) -> CellData:
    """The run's cells, labelled and grouped, quality-filtered; every fault one DataError."""
    paths, metadata, label, group, only = sources(config)
    d, p = config.data, config.data.preprocess
    cells = load_cells(paths, metadata, d.normalised)
    where = metadata[0] if metadata else paths[0]
    for name, what in ((label, "label"), (group, "group")):  # named columns exist, before any cell is left out
        if name:
            _column(cells.subset(np.arange(0)), name, where, what)
    counts = {"cells_read": len(cells), "genes_read": int(cells.x.shape[1])}
    keep = quality(cells, p.min_genes, p.min_counts) if not d.normalised else quality(cells, p.min_genes)
    counts["cells_failing_quality"] = int((~keep).sum())
    chosen = np.ones(len(cells), bool)
    for column, values in (only or {}).items():
        chosen &= np.isin(_column(cells, column, where, "selection"), [str(v) for v in values])
    others = cells.subset(np.flatnonzero(keep & ~chosen)) if (keep & ~chosen).any() else None
    counts["cells_outside_only"] = int((keep & ~chosen).sum())
    cells = cells.subset(np.flatnonzero(keep & chosen))
    if len(cells) == 0:
        raise DataError(where, "no cell is left after the quality filter and data.only")
    counts["cells"] = len(cells)
    names = _column(cells, label, where, "label")
    classes = sorted(np.unique(names).tolist())
    if len(classes) < 2:
        raise DataError(where, f"every cell is of one class ({classes[0]!r}); a classifier needs two or more")
    groups = _column(cells, group, where, "group") if group else None
    return CellData(cells, np.searchsorted(classes, names), classes, groups, others, counts, label, paths)


def split(config: CellsRunConfig, data: CellData) -> dict[str, np.ndarray]:
    """The run's train/val/test cells: data.fold of the k folds, or one holdout (the first fold
    of round(1 / data.test_fraction)), tested on whole groups where the data has them."""
    d = config.data
    groups = data.groups if d.group_by else None
    k = d.folds if d.split == "kfold" else max(2, round(1 / d.test_fraction))
    if groups is not None and d.split == "holdout":
        k = min(k, len(np.unique(groups)))
    folds = kfold_splits(data.labels, groups, k, d.val_fraction, config.seed, str(data.sources[0]),
                         val_by_group=False, unit="groups")
    return folds[d.fold or 0]


def network(config: CellsRunConfig, n_classes: int, n_genes: int, n_pcs: int, clip: float | None) -> nn.Module:
    """(B, panel) -> (B, K) logits: the fitted preprocessing (:class:`CellInput`, empty here:
    filled by fitting or by loading weights) then the registry model."""
    first = CellInput(n_genes, n_pcs, clip)
    return nn.Sequential(first, create_model(config.model.name, in_features=first.n_features, num_outputs=n_classes,
                                             **config.model.args))


def preprocessor(config: CellsRunConfig, **changes: Any) -> CellPreprocess:
    """The run's preprocessing, unfitted, as ``data.preprocess`` sets it (``changes`` override)."""
    p = config.data.preprocess
    settings = {"min_cells": p.min_cells, "n_top_genes": p.n_top_genes, "target_sum": p.target_sum, "clip": p.clip,
                "n_pcs": p.n_pcs, "min_present": p.min_present, "seed": config.seed}
    return CellPreprocess(**{**settings, **changes})


def _pre_file(config: CellsRunConfig, data: CellData, fitted: CellPreprocess | None = None, **more: Any) -> dict:
    p = config.data.preprocess
    out = {"classes": data.classes, "panel": data.cells.genes.tolist(), "label": data.label,
           "target_sum": p.target_sum, "normalised": config.data.normalised, "min_present": p.min_present,
           "n_pcs": p.n_pcs, "clip": p.clip, "counts": dict(data.counts), **more}
    if fitted is not None:
        out.update(genes=fitted.genes.tolist(), n_pcs=fitted.n_features if fitted.components is not None else 0,
                   counts={**data.counts, **fitted.counts})
    return out


def train(config: CellsRunConfig, out: str | Path | None = None, resume: bool = False) -> Run:
    """Load, filter and split the cells, fit the preprocessing on the training cells, train,
    pick the best epoch on validation, report test metrics with CIs (``data.split: kfold``:
    every fold, then the pooled out-of-fold results)."""
    if config.ensemble > 1:
        raise ConfigError("ensemble", "deep ensembles of cells runs are not supported yet")
    watch = Stopwatch()
    with watch("load"):
        data = load_data(config)
    if config.data.split == "kfold" and config.data.fold is None:
        return _train_folds(config, data, out, resume, watch)
    parts = without_test(config, split(config, data))  # a tuning trial never reads its test cells
    with watch("preprocess"):
        fitted = preprocessor(config).fit(data.cells.subset(parts["train"]))
        pre = _pre_file(config, data, fitted)
        x = panel_matrix(data.cells, pre)
    n_classes = len(data.classes)
    seed_everything(config.seed, config.deterministic)
    model = nn.Sequential(CellInput.fitted(fitted, data.cells.genes),
                          create_model(config.model.name, in_features=fitted.n_features, num_outputs=n_classes,
                                       **config.model.args))
    weights = class_weights(data.labels[parts["train"]], data.classes, data.sources[0], "cells")
    device = resolve_device(config.trainer.device)
    run_dir = run_path(config, out, resume, device)
    trainer = make_trainer(config, model, weighted_cross_entropy(weights if config.trainer.class_weights else None),
                           multiclass_metrics(n_classes), lambda o: torch.softmax(o, dim=1), run_dir, device,
                           show=("train/loss", "val/loss", "val/accuracy", "val/balanced_accuracy", "lr"))
    sets = {k: CellRows(x[v], data.labels[v]) for k, v in parts.items()}
    extra = {"split": f"fold {config.data.fold + 1} of {config.data.folds}" if config.data.fold is not None else
             "holdout", "split_sizes": {k: int(len(v)) for k, v in parts.items()}, "classes": data.classes,
             "class_counts": {k: np.bincount(data.labels[v], minlength=n_classes).tolist() for k, v in parts.items()},
             "groups": {k: sorted(map(str, np.unique(data.groups[v]))) for k, v in parts.items()}
             if data.groups is not None else None, "counts": pre["counts"]}
    manifest = start_run(config, run_dir, resume, device, pre, {f"data{i}": p for i, p in enumerate(data.sources)},
                         extra)
    with watch("train"):
        trainer.fit(sets["train"], sets["val"], resume=resume)
    if config.trial:
        return finish_trial(trainer, run_dir, sets["val"], manifest, watch)
    with watch("evaluate"):
        metrics, samples, val_prob = best_predictions(trainer, run_dir, sets)
        prob, scores = _report(samples, data, parts["test"], config.n_boot, "test", run_dir)
        metrics.update(scores)
        val = parts["val"]
        if is_main_process():
            save_predictions(run_dir, "val", data.labels[val], val_prob, data.classes, val, data.cells.cells[val],
                             data.groups[val] if data.groups is not None else None)
        metrics.update(trust(run_dir, config, data.classes, False, (data.labels[val], val_prob),
                             (data.labels[parts["test"]], prob),
                             data.groups[parts["test"]] if data.groups is not None else None))
    write_results(run_dir, metrics, manifest, watch=watch)
    _counts_table(run_dir, pre["counts"])
    return Run(run_dir, metrics, trainer)


#: what each count of a run's cells and genes means, in the order they were taken
COUNTS = {"cells_read": "cells read", "cells_failing_quality": "left out: under data.preprocess.min_genes genes or "
          "min_counts counts", "cells_outside_only": "left out: outside data.only (kept aside, e.g. doublets)",
          "cells": "cells trained and tested on", "training_cells": "training cells (the preprocessing's)",
          "genes_read": "genes read", "genes_detected": "genes in data.preprocess.min_cells training cells or more",
          "genes_chosen": "highly variable genes the network reads"}


def _counts_table(run_dir: Path, counts: dict[str, int]) -> None:
    """``cells.md/.csv``: how many cells and genes each step kept (quality, selection, genes)."""
    from ..report.tables import write_table

    if is_main_process():
        write_table(pd.DataFrame([{"step": text, "n": counts[k]} for k, text in COUNTS.items() if k in counts]),
                    run_dir / "cells", "Cells and genes at each step")


def _train_folds(config: CellsRunConfig, data: CellData, out, resume: bool, watch: Stopwatch) -> Run:
    """The parent of a k-fold run: the folds share the panel; each fits its own preprocessing."""
    from .crossval import train_folds

    d = config.data
    groups = data.groups if d.group_by else None
    kfold_splits(data.labels, groups, d.folds, d.val_fraction, config.seed, str(data.sources[0]), False, "groups")
    pre = _pre_file(config, data, folds=d.folds)
    how = f"{d.folds}-fold cross-validation" + (f", by {sources(config)[3]}" if groups is not None else "")
    extra = {"split": how, "classes": data.classes, "counts": data.counts,
             "class_counts": {"all cells": np.bincount(data.labels, minlength=len(data.classes)).tolist()}}
    run = train_folds(config, out, resume, resolve_device(config.trainer.device), train, cell_scores,
                      data.classes, pre, extra, None, watch, ("cells", "groups"))
    _counts_table(run.run_dir, data.counts)
    return run


def _report(samples: np.ndarray, data: CellData, rows: np.ndarray, n_boot: int, prefix: str,
            out_dir: Path | None, every_point: bool = False) -> tuple[np.ndarray, dict[str, float]]:
    """Metrics with 95% CIs (groups resampled where the data has them) of (S, N, K) probabilities
    of cells ``rows``, ``<prefix>_predictions.csv`` (cell ids as sources) and referral curves."""
    prob, parts = samples.mean(axis=0), uncertainty_columns(samples)
    groups = data.groups[rows] if data.groups is not None else None
    metrics = score_predictions(data.labels[rows], prob, data.classes, cell_scores, n_boot, prefix, out_dir,
                                rows=rows, patients=groups, sources=data.cells.cells[rows].tolist(),
                                points=True if every_point else ("median_f1", "macro_f1"), after=parts)
    if out_dir is not None:
        metrics.update(referral(out_dir, data.labels[rows], prob, parts, prefix, groups))
    return prob, metrics


def cell_scores(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """:func:`~biodl.evaluation.multiclass_scores` and, as Abdelaal et al. 2019 report, the
    median and mean of the per-class F1 over the classes present in ``y``."""
    out = multiclass_scores(y, prob)
    f1 = per_class_f1(y, prob.argmax(axis=1), prob.shape[1])
    present = f1[~np.isnan(f1)]
    out["median_f1"] = float(np.median(present)) if len(present) else float("nan")
    out["macro_f1"] = float(np.mean(present)) if len(present) else float("nan")
    return out


def evaluate(predictor, data: str | Path | None = None, overwrite: bool = False,
             metadata: str | Path | None = None) -> tuple[dict[str, float], Path]:
    """Metrics of a trained run on its own test split, or on other labelled cells ``data`` (an
    .h5ad, a 10x folder or counts CSV with ``metadata``), labelled by the column the run was
    trained on; cells of a class the run does not know are counted (and how many of them the
    prediction sets leave unassigned), the rest scored on the classes present."""
    config, pre = predictor.config, predictor.pre
    if data is None:
        if predictor.kind != "single":
            raise ConfigError("--data", f"a {predictor.kind} run's test results are its pooled ones (metrics.json); "
                                        "give other labelled cells with --data")
        own = load_data(config)
        rows = split(config, own)["test"]
        cells, names, name = own.cells.subset(rows), np.asarray(own.classes)[own.labels[rows]], "test"
        groups = own.groups[rows] if own.groups is not None else None
    else:
        path = Path(data)
        cells = load_cells(path, metadata, pre.normalised)
        p = config.data.preprocess
        cells = cells.subset(np.flatnonzero(quality(cells, p.min_genes, 0 if pre.normalised else p.min_counts)))
        names, name, groups = _column(cells, pre.label, metadata or path, "label"), path.name.split(".")[0], None
        if config.data.group and config.data.group in cells.obs.columns:
            groups = cells.obs[config.data.group].astype(str).to_numpy()
    out = predictor.run_dir / runs.EVALUATION / f"{name}.json"
    refuse_overwrite(out, overwrite)
    check_present(cells, pre.genes or pre.panel, pre.min_present)
    known = np.isin(names, pre.classes)
    if not known.any():
        raise DataError(data or "test", f"no cell is of a class the run knows ({', '.join(pre.classes)})")
    labels = np.searchsorted(pre.classes, np.where(known, names, pre.classes[0]))
    samples = predictor.samples(CellRows(panel_matrix(cells, pre), labels))  # (M, P, N, K)
    out.parent.mkdir(exist_ok=True)
    view = CellData(cells.subset(np.flatnonzero(known)), labels[known], list(pre.classes),
                    None if groups is None else groups[known], None, {}, pre.label, [Path(data or "test")])
    flat = samples[:, :, known].reshape(-1, int(known.sum()), samples.shape[-1])
    _, metrics = _report(flat, view, np.arange(int(known.sum())), config.n_boot, name, out.parent, every_point=True)
    metrics[f"{name}/n"] = float(known.sum())
    metrics.update(trust_of(predictor, name, labels[known], samples.mean(axis=1)[:, known], config.n_boot,
                            view.groups, out.parent / runs.predictions_file(name)))
    if (~known).any():
        metrics[f"{name}/unknown_class_cells"] = float((~known).sum())
        sets = predictor.sets(samples.mean(axis=1)[:, ~known])
        if sets is not None:
            metrics[f"{name}/unknown_class_unassigned"] = float((sets.sum(axis=1) != 1).mean())
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out


# ----------------------------------------------------------------------------- the inference end


class CellsEnd(SoftmaxEnd):
    """The cells task's end for :mod:`biodl.inference.predictor`: new cells as a path (an .h5ad, a
    10x folder, a counts CSV), a list of them, or :class:`~biodl.data.cells.CellCounts`; one row per
    cell, by its id."""

    preprocess = PreprocessFile

    def network(self, config: CellsRunConfig, pre: PreprocessFile) -> nn.Module:
        return network(config, len(pre.classes), len(pre.genes), pre.n_pcs, pre.clip)

    def inferer(self, config: CellsRunConfig, pre: PreprocessFile, module: nn.Module, device: torch.device) -> Inferer:
        return Inferer(module, device=device, precision=config.trainer.precision,
                       postprocess=lambda o: torch.softmax(o, dim=1), batch_size=max(config.data.batch_size, 256),
                       num_workers=config.data.num_workers, mc_dropout=config.model.mc_dropout, seed=config.seed)

    def read(self, pre: PreprocessFile, inputs: Any) -> tuple[CellRows, pd.DataFrame]:
        cells = inputs if isinstance(inputs, CellCounts) else load_cells(inputs, normalised=pre.normalised)
        check_present(cells, pre.genes or pre.panel, pre.min_present)
        return CellRows(panel_matrix(cells, pre), np.zeros(len(cells), np.int64)), pd.DataFrame({"cell": cells.cells})

    def module(self, inferer: Inferer, pre: PreprocessFile, tta: bool = True) -> nn.Module:
        """(B, panel) log-normalised values -> (B, K) logits."""
        return inferer.module

    def export_sample(self, predictor: Any) -> tuple[np.ndarray, Any, dict, dict]:
        """For ``biodl export``: the test cells' panel values (a k-fold parent: every cell of its
        data, each seen in training by all folds but one), and their descriptions."""
        pre, config = predictor.pre, predictor.config
        data = load_data(config)
        rows = split(config, data)["test"] if predictor.kind == "single" else np.arange(len(data.cells))
        cells = data.cells.subset(rows)
        first = {"name": "cells", "dtype": "float32", "shape": ["batch", len(pre.panel)], "columns": pre.panel,
                 "layout": "each cell's values over the panel genes, in this order (a gene the data lacks: 0)"}
        how = "as they are (already normalised)" if pre.normalised else \
            f"counts x {pre.target_sum:g} / the cell's total, then log1p"
        return panel_matrix(cells, pre).toarray(), cells, first, {
            "before_graph": how, "inside_graph": "each network's genes picked, standardised, clipped (and projected "
                                                 "on its principal components), the networks, the recalibration, "
                                                 "softmax"}


#: the cells task's inference end
END = CellsEnd()
