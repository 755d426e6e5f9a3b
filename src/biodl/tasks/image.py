"""Image classification: images in any supported layout -> split -> CNN -> test metrics with
bootstrap CIs (patients resampled where known); k-fold cross-validation and deep ensembles as
parent runs of child runs. The data live in ``image_data`` (with the inference end), the test
report in ``image_report``.

Exact duplicate images that cross splits are reported (a leak). Augmentation runs batched on
the device.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import runs
from ..config import ImageRunConfig
from ..data.arrays import ImageDataset, ImageSet
from ..data.cache import cache_key
from ..data.splits import cross_split_duplicates
from ..data.stain import StainNormalizer
from ..data.transforms import BatchAugment, ImagePreprocess, channel_stats, dihedral_tta
from ..engine import Trainer, UnfreezeBackbone
from ..engine.distributed import is_main_process
from ..engine.optim import optimizer_factory
from ..engine.trainer import resolve_device
from ..errors import ConfigError, RunDirError
from ..evaluation import BINARY_EXTRAS, multiclass_metrics, multiclass_scores
from ..models.transfer import load_pretrained, param_groups, resolve_pretrained
from ..report.predictions import prediction_artefacts, save_predictions
from ..repro import seed_everything
from .common import (Run, Stopwatch, class_weights, finish_run, finish_trial, make_trainer, refuse_overwrite, run_path,
                     start_run, weighted_cross_entropy, without_test, write_results)
from .image_data import (END, PreprocessFile, load_images, model_name, network, preprocess_dict, resident_sets,
                         split_images, trace)
from .image_report import log_tensorboard, report_split, show_examples, slide_maps
from .trust import check_calibration, trust, trust_of

__all__ = ["END", "PreprocessFile", "build_trainer", "train", "evaluate"]


def build_trainer(config: ImageRunConfig, model: torch.nn.Module, n_classes: int, weights: torch.Tensor | None,
                  pre: dict[str, Any], run_dir: Path | None, device: torch.device, train: bool = True) -> Trainer:
    """The run's Trainer: uint8 batches normalised (and augmented in training) on the device,
    cross-entropy (``weights``: per-class loss weights), the run's metrics and callbacks."""
    m, d = config.model, config.data
    if d.augment and d.stain_jitter and pre["in_chans"] != 3:
        raise ConfigError("data.stain_jitter", f"stain augmentation needs RGB (H&E) images; these have "
                                               f"{pre['in_chans']} channel{'s' * (pre['in_chans'] > 1)}")
    prep = ImagePreprocess(pre["mean"], pre["std"], BatchAugment(stain=d.stain_jitter) if d.augment else None)
    opt = optimizer_factory(config.optimizer)
    make_opt = (lambda _: opt(param_groups(model, config.optimizer.lr, m.backbone_lr_factor))) if m.pretrained else opt

    unfreeze = (UnfreezeBackbone(m.freeze_epochs),) if m.pretrained and m.freeze_epochs else ()
    metrics = multiclass_metrics(n_classes, config.data.graded)
    return make_trainer(config, model, weighted_cross_entropy(weights), metrics,
                        lambda o: torch.softmax(o, dim=1), run_dir, device, train, make_opt, unfreeze,
                        ("train/loss", "val/loss", "val/accuracy", "val/roc_auc", "val/qwk", "lr"), prep,
                        dihedral_tta if m.tta else None)


def train(config: ImageRunConfig, out: str | Path | None = None, resume: bool = False) -> Run:
    """Load, split, train, pick the best epoch on validation, and report test metrics with CIs
    (``data.split: kfold``: every fold, then the pooled out-of-fold results; see ``crossval``)."""
    watch = Stopwatch()
    data, path = load_images(config, watch)
    parts, how = split_images(config, data, path)
    if how == "kfold":
        if config.ensemble > 1:
            raise ConfigError("ensemble", "a k-fold run (data.split: kfold) with an ensemble per fold is not "
                                          "supported; choose one")
        return _train_folds(config, data, path, out, resume, watch)
    if config.ensemble > 1:
        if config.trial:
            raise ConfigError("trial", "a tuning trial trains one model (ensemble: 1)")
        return _train_ensemble(config, data, parts, how, out, resume, watch)
    parts = without_test(config, parts)  # a tuning trial: the test images are never given to the model
    dups = cross_split_duplicates(data.images, parts)
    if dups:
        warnings.warn(f"{path}: {len(dups)} exact duplicate images cross splits (first: rows {dups[0][:2]})",
                      stacklevel=2)
    n_classes, in_chans = len(data.classes), data.images.shape[-1]
    mean, std = channel_stats(data.images, parts["train"])
    pre = preprocess_dict(config, data, mean, std)
    per_class = class_weights(data.labels[parts["train"]], data.classes, path, "images")
    check_calibration(config, n_classes, config.data.graded)
    balance = config.data.balance
    device = resolve_device(config.trainer.device)
    run_dir = run_path(config, out, resume, device)
    seed_everything(config.seed, config.deterministic)
    model = network(config, n_classes, in_chans, int(data.images.shape[1]))
    extra = {"split": how, "split_sizes": {k: int(len(v)) for k, v in parts.items()},
             "class_counts": {k: np.bincount(data.labels[v], minlength=n_classes).tolist() for k, v in parts.items()},
             "duplicates_across_splits": [list(map(str, d)) for d in dups[:100]], "n_images": len(data),
             "classes": data.classes, "data_content_sha256": cache_key(data.images)}
    if config.model.pretrained:
        weights = resolve_pretrained(config.model.pretrained, model_name(config, int(data.images.shape[1])),
                                     config.model.download)
        extra["pretrained"] = {"path": str(weights), **load_pretrained(model, weights)}
    loss_weights = per_class if balance == "loss" else None
    trainer = build_trainer(config, model, n_classes, loss_weights, pre, run_dir, device)
    sets, extra["device_cache"] = resident_sets(config, data, parts, device)
    manifest = start_run(config, run_dir, resume, device, pre, {"data": path} if path.is_file() else {}, extra)
    draw = per_class[sets["train"].labels] if balance == "sampler" else None
    with watch("train"):
        trainer.fit(sets["train"], sets["val"], resume=resume, sample_weights=draw)
    if config.trial:
        return finish_trial(trainer, run_dir, sets["val"], manifest, watch)
    with watch("evaluate"):
        metrics = finish_run(trainer, run_dir, sets["val"], sets["test"])
        samples = trainer.predict_passes(sets["test"]).numpy().astype(np.float64)
        prob, scores = report_split(samples, sets["test"], config.data.graded, config.n_boot, "test", run_dir,
                                    BINARY_EXTRAS)
        metrics.update(scores)
        val_prob = trainer.predict(sets["val"]).numpy().astype(np.float64)
        rows, patients, sources = trace(sets["val"])
        if is_main_process():
            save_predictions(run_dir, "val", sets["val"].labels.numpy(), val_prob, data.classes, rows, sources,
                             patients)
        metrics.update(trust(run_dir, config, data.classes, config.data.graded,
                             (sets["val"].labels.numpy(), val_prob), (sets["test"].labels.numpy(), prob),
                             trace(sets["test"])[1]))
        if is_main_process():
            show_examples(sets["test"], prob, run_dir / "test_examples.png")
            pred = pd.read_csv(run_dir / runs.predictions_file("test"), keep_default_na=False,
                               dtype={"patient": str, "source": str})
            slide_maps(config, data, run_dir, pred)
            log_tensorboard(trainer, sets["train"], sets["test"], prob, run_dir / runs.TENSORBOARD)
    write_results(run_dir, metrics, manifest, watch=watch)
    return Run(run_dir, metrics, trainer)


def _train_folds(config: ImageRunConfig, data: ImageSet, path: Path, out, resume: bool,
                 watch: Stopwatch) -> Run:
    """The parent of a k-fold run (the folds were checked by ``split_images``): its preprocess.json
    feeds [0, 1] pixels to the fold models, which normalise them each their own way."""
    from .crossval import train_folds

    pre = preprocess_dict(config, data, folds=config.data.folds)
    extra = {"split": f"{config.data.folds}-fold cross-validation" + (", by patient" if data.patients is not None
                                                                      and config.data.group_by_patient else ""),
             "n_images": len(data), "classes": data.classes, "data_content_sha256": cache_key(data.images),
             "class_counts": {"all images": np.bincount(data.labels, minlength=len(data.classes)).tolist()}}
    def score(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
        return multiclass_scores(y, prob, config.data.graded)

    def figures(run_dir: Path, pred: pd.DataFrame) -> list[str]:
        return slide_maps(config, data, run_dir, pred)

    return train_folds(config, out, resume, resolve_device(config.trainer.device), train, score, data.classes, pre,
                       extra, figures, watch)


def _train_ensemble(config: ImageRunConfig, data: ImageSet, parts: dict[str, np.ndarray], how: str, out,
                    resume: bool, watch: Stopwatch) -> Run:
    """The parent of a deep ensemble: like a k-fold parent, it feeds [0, 1] pixels to its
    members, which normalise them each their own way."""
    from .ensemble import train_ensemble

    check_calibration(config, len(data.classes), config.data.graded)
    pre = preprocess_dict(config, data, members=config.ensemble)
    n_classes = len(data.classes)
    extra = {"split": how, "split_sizes": {k: int(len(v)) for k, v in parts.items()},
             "class_counts": {k: np.bincount(data.labels[v], minlength=n_classes).tolist() for k, v in parts.items()},
             "n_images": len(data), "classes": data.classes, "data_content_sha256": cache_key(data.images),
             "note": f"deep ensemble of {config.ensemble} members (seeds {config.seed}..."
                     f"{config.seed + config.ensemble - 1}), one split"}

    def score(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
        return multiclass_scores(y, prob, config.data.graded)

    return train_ensemble(config, out, resume, resolve_device(config.trainer.device), train, score, data.classes,
                          config.data.graded, pre, extra, watch)


def evaluate(predictor, data: str | Path | None = None, overwrite: bool = False) -> tuple[dict[str, float], Path]:
    """Metrics (with CIs) of a trained run (``predictor``: :func:`biodl.load`) on its own test split or
    on the labelled images ``data`` (any layout), as ``RUN_DIR/evaluation/<name>.json`` with the
    predictions, tables and figures beside it."""
    run_dir, pre = predictor.run_dir, predictor.pre
    config = predictor.config
    if data is None and predictor.kind == "kfold":
        raise RunDirError(run_dir, "a k-fold run's test results are its out-of-fold predictions (metrics.json, "
                                   "test_predictions.csv); evaluate it on other patients with --data, or evaluate "
                                   "a fold run in folds/")
    if data is not None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"path": Path(data),
                                                                                    "dataset": None})})
    name = "test" if data is None else Path(data).stem
    out = run_dir / runs.EVALUATION / f"{name}.json"
    refuse_overwrite(out, overwrite)
    images, path = load_images(config, stain=StainNormalizer.from_dict(pre.stain))
    test = ImageDataset(images, indices=split_images(config, images, path)[0]["test"] if data is None else None)
    samples = predictor.samples(test)
    out.parent.mkdir(exist_ok=True)
    _, metrics = report_split(samples.reshape(-1, *samples.shape[2:]), test, pre.graded, config.n_boot, name,
                              out.parent, points=True)
    metrics.update(trust_of(predictor, name, test.labels.numpy(), samples.mean(axis=1), config.n_boot, trace(test)[1],
                            out.parent / runs.predictions_file(name)))
    prediction_artefacts(out.parent, name)
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out
