"""Multiple-instance learning on cached tile features (``task: mil``; #32): a bag's label (a
slide's, a patient's, or a mosaic window's) learnt from its tiles' features alone, by attention
pooling (``abmil``, Ilse et al. 2018) or the mean-pooling baseline (``model.args.pooling: mean``).

Bags and features come from :mod:`biodl.tasks.mil_data`; training takes random subsets of
``data.max_tiles`` tiles from larger bags; the best epoch is picked on validation patients, then
the test bags get metrics with patient-level (cluster bootstrap) CIs, recalibration, conformal
sets, and per tile its attention and its own score (``test_tiles.csv``, heat maps; see
:mod:`biodl.tasks.mil_report`). ``data.split: kfold`` trains each fold as a run and pools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import runs
from ..config import MilRunConfig
from ..data.bags import BagSet
from ..engine.distributed import is_main_process
from ..engine.inferer import Inferer, resolve_device
from ..errors import ConfigError
from ..evaluation import multiclass_metrics, multiclass_scores
from ..models import create_model
from ..report.predictions import save_predictions
from ..repro import seed_everything
from . import mil_data as md
from .common import (Run, SoftmaxEnd, Stopwatch, best_predictions, class_weights, finish_trial, make_trainer,
                     refuse_overwrite, run_path, score_predictions, start_run, weighted_cross_entropy, without_test,
                     write_results)
from .mil_report import pool_tiles, tile_report
from .trust import referral, trust, trust_of, uncertainty_columns

__all__ = ["PreprocessFile", "network", "train", "evaluate", "MilEnd", "END"]

PreprocessFile = md.PreprocessFile


def network(config: MilRunConfig, n_classes: int, dim: int) -> nn.Module:
    """(B, N, D) NaN-padded bags -> (B, K) logits: the registry model ``model.name`` (abmil)."""
    return create_model(config.model.name, in_features=dim, num_classes=n_classes, **config.model.args)


def _pre(config: MilRunConfig, lay: md.BagLayout, **more: Any) -> dict[str, Any]:
    d = config.data
    return {"classes": lay.classes, "source": "table" if lay.entries is not None else "tree", "bags": d.bags,
            "window": d.window, "min_tiles": d.min_tiles, "tile": lay.tile, **more}


def train(config: MilRunConfig, out: str | Path | None = None, resume: bool = False) -> Run:
    """Make the bags, split them by patient, fill the feature cache, train, pick the best epoch
    on validation, and report the test bags (``data.split: kfold``: every fold, then pooled)."""
    if config.ensemble > 1:
        raise ConfigError("ensemble", "deep ensembles of MIL runs are not supported yet")
    watch = Stopwatch()
    with watch("load"):
        lay = md.layout(config)
    if config.data.split == "kfold" and config.data.fold is None:
        return _train_folds(config, lay, out, resume, watch)
    parts = without_test(config, md.split(config, lay))  # a tuning trial never reads its test bags
    with watch("features"):
        feats, prov, extractor = md.features(config, lay, progress=config.trainer.progress)
    k, dim = len(lay.classes), int(feats[0].shape[1])
    pre = _pre(config, lay, dim=dim, provenance=prov.model_dump(),
               extractor=str(Path(extractor).resolve()) if extractor else None,
               cache=str(md.cache_root(config).resolve()) if extractor else None)
    seed_everything(config.seed, config.deterministic)
    model = network(config, k, dim)
    weights = class_weights(lay.labels[parts["train"]], lay.classes, lay.where, "bags")
    device = resolve_device(config.trainer.device)
    run_dir = run_path(config, out, resume, device)
    trainer = make_trainer(config, model, weighted_cross_entropy(weights if config.trainer.class_weights else None),
                           multiclass_metrics(k), lambda o: torch.softmax(o, dim=1), run_dir, device,
                           show=("train/loss", "val/loss", "val/accuracy", "val/roc_auc", "lr"))
    sets = {name: md.bag_set(lay, feats, rows, config.data.max_tiles if name == "train" else None)
            for name, rows in parts.items()}
    groups = lay.groups
    extra = {"split": f"fold {config.data.fold + 1} of {config.data.folds}" if config.data.fold is not None else
             "holdout", "split_sizes": {n: int(len(v)) for n, v in parts.items()}, "classes": lay.classes,
             "class_counts": {n: np.bincount(lay.labels[v], minlength=k).tolist() for n, v in parts.items()},
             "patients": {n: sorted(set(groups[v].tolist())) for n, v in parts.items()}, "features": prov.model_dump()}
    manifest = start_run(config, run_dir, resume, device, pre, {}, extra)
    with watch("train"):
        trainer.fit(sets["train"], sets["val"], resume=resume)
    if config.trial:
        return finish_trial(trainer, run_dir, sets["val"], manifest, watch)
    with watch("evaluate"):
        metrics, samples, val_prob = best_predictions(trainer, run_dir, sets)
        prob, scores = _report(samples, lay, parts["test"], config.n_boot, "test", run_dir)
        metrics.update(scores)
        val = parts["val"]
        if is_main_process():
            save_predictions(run_dir, "val", lay.labels[val], val_prob, lay.classes, val,
                             [lay.ids[i] for i in val], groups[val])
        metrics.update(trust(run_dir, config, lay.classes, False, (lay.labels[val], val_prob),
                             (lay.labels[parts["test"]], prob), groups[parts["test"]]))
        scores, sections = tile_report(trainer.module, lay, feats, parts["test"], "test", run_dir, config.n_boot,
                                       prov.mpp if config.data.fold is None else None)  # a fold's: its parent's
        metrics.update(scores)
    write_results(run_dir, metrics, manifest, layout={"sections": sections}, watch=watch)
    return Run(run_dir, metrics, trainer)


def _train_folds(config: MilRunConfig, lay: md.BagLayout, out, resume: bool, watch: Stopwatch) -> Run:
    """The parent of a k-fold run: each fold a run with its own features where the extractor has folds."""
    from .crossval import train_folds

    network(config, len(lay.classes), 8)  # the model's settings, before any folder is made
    if md.extractor_folds(config) is not None:
        md.extractor_of(config)  # the fold counts agree
    else:
        md.split(config, lay)  # enough patients for the folds
    groups = lay.groups
    extra = {"split": f"{config.data.folds}-fold cross-validation, by patient", "classes": lay.classes,
             "class_counts": {"all bags": np.bincount(lay.labels, minlength=len(lay.classes)).tolist()},
             "patients": sorted(set(groups.tolist()))}
    return train_folds(config, out, resume, resolve_device(config.trainer.device), train, multiclass_scores,
                       lay.classes, _pre(config, lay, folds=config.data.folds), extra, None, watch,
                       ("bags", "patients"), more=lambda run_dir: pool_tiles(run_dir, config, _fold_mpp(run_dir)))


def _fold_mpp(run_dir: Path) -> float | None:
    """The resolution of the first fold's features (every fold reads tiles at its extractor's)."""
    pre = runs.read_json(runs.fold_dir(run_dir, 0) / runs.PREPROCESS)
    return (pre.get("provenance") or {}).get("mpp")


def _report(samples: np.ndarray, lay: md.BagLayout, rows: np.ndarray, n_boot: int, prefix: str,
            out_dir: Path | None) -> tuple[np.ndarray, dict[str, float]]:
    """Metrics of (S, N, K) probabilities of bags ``rows`` with patient-level CIs, the predictions
    CSV (bag names as sources) and referral curves."""
    prob, parts = samples.mean(axis=0), uncertainty_columns(samples)
    groups = lay.groups[rows]
    metrics = score_predictions(lay.labels[rows], prob, lay.classes, multiclass_scores, n_boot, prefix, out_dir,
                                rows=rows, patients=groups, sources=[lay.ids[i] for i in rows], after=parts,
                                points=True)
    if out_dir is not None:
        metrics.update(referral(out_dir, lay.labels[rows], prob, parts, prefix, groups))
    return prob, metrics


def evaluate(predictor, data: str | Path | None = None, overwrite: bool = False) -> tuple[dict[str, float], Path]:
    """Metrics of a trained run on its own test bags, or on another patient tree ``data``
    (external validation: the same mosaics and bags; each fold's network on the features of its
    own extractor, the fold models' probabilities averaged, each recalibrated by its fold)."""
    config = predictor.config
    if data is None and predictor.kind != "single":
        raise ConfigError("--data", f"a {predictor.kind} run's test results are its pooled ones (metrics.json); give "
                                    "other patients' tiles with --data")
    name = "test" if data is None else Path(data).name
    out = predictor.run_dir / runs.EVALUATION / f"{name}.json"
    refuse_overwrite(out, overwrite)
    member_probs, lay, rows = [], None, None
    for m in predictor.members:
        lay = md.layout(m.config, None if data is None else Path(data), list(predictor.classes))
        rows = md.split(m.config, lay)["test"] if data is None else np.arange(len(lay.labels))
        feats = md.features(m.config, lay)[0]
        member_probs.append(predictor.end.probabilities(m.inferer.predict_passes(md.bag_set(lay, feats, rows))))
    samples = np.stack(member_probs)  # (M, P, N, K)
    out.parent.mkdir(exist_ok=True)
    _, metrics = _report(samples.reshape(-1, *samples.shape[2:]), lay, rows, config.n_boot, name, out.parent)
    metrics[f"{name}/n"] = float(len(rows))
    metrics.update(trust_of(predictor, name, lay.labels[rows], samples.mean(axis=1), config.n_boot, lay.groups[rows],
                            out.parent / runs.predictions_file(name)))
    if predictor.kind == "single":
        metrics.update(tile_report(predictor.members[0].inferer.module, lay, feats, rows, name, out.parent,
                                   config.n_boot)[0])
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out


# ----------------------------------------------------------------------------- the inference end


class MilEnd(SoftmaxEnd):
    """The MIL task's end for :mod:`biodl.inference.predictor`: a patient tree (its mosaics cut
    into bags as the run made them, features by the run's extractor); one row per bag."""

    preprocess = PreprocessFile

    def network(self, config: MilRunConfig, pre: PreprocessFile) -> nn.Module:
        return network(config, len(pre.classes), pre.dim)

    def inferer(self, config: MilRunConfig, pre: PreprocessFile, module: nn.Module, device: torch.device) -> Inferer:
        return Inferer(module, device=device, precision=config.trainer.precision,
                       postprocess=lambda o: torch.softmax(o, dim=1), batch_size=config.data.batch_size,
                       num_workers=config.data.num_workers, mc_dropout=config.model.mc_dropout, seed=config.seed)

    def read(self, pre: PreprocessFile, inputs: Any) -> tuple[BagSet, pd.DataFrame]:
        if pre.extractor is None:
            raise ConfigError("predict", "this run's folds read features of their own extractors; evaluate it on "
                                         "labelled patients with biodl evaluate RUN --data TREE, or predict with "
                                         "one fold's run (RUN/folds/fold<k>)")
        from ..config import MilDataConfig

        config = MilRunConfig(data=MilDataConfig(path=Path(inputs), extractor=Path(pre.extractor), bags=pre.bags,
                                                 window=pre.window, min_tiles=pre.min_tiles, split="holdout",
                                                 features=Path(pre.cache) if pre.cache else None))
        lay = md.layout(config, Path(inputs), list(pre.classes))
        feats = md.features(config, lay)[0]
        rows = np.arange(len(lay.labels))
        return md.bag_set(lay, feats, rows), pd.DataFrame({"bag": lay.ids, "patient": lay.groups})

    def module(self, inferer: Inferer, pre: PreprocessFile, tta: bool = True) -> nn.Module:
        """(B, N, D) NaN-padded bags -> (B, K) logits."""
        return inferer.module


#: the MIL task's inference end
END = MilEnd()
