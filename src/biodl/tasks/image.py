"""Image classification: any supported layout -> cached uint8 arrays -> split -> CNN -> metrics
with bootstrap CIs on the test set.

Splits: the data set's official ones when it has them (MedMNIST); otherwise stratified
train/val/test, grouped by patient whenever patient ids exist. Exact duplicate images that
cross splits are reported (a leak). Augmentation runs batched on the device.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from .. import runs
from pydantic import Field, model_validator

from ..config import ImageRunConfig, Strict
from ..data.arrays import ImageDataset, ImageSet, load_npy_pair, load_npz
from ..data.resident import decide
from ..data.cache import cache_key, cached
from ..data.folders import (EXTENSIONS, csv_image_files, decode_images, image_paths, load_csv_images, load_image_folder,
                            load_patient_tree)
from ..data.layouts import default_size, detect_image_layout
from ..data.wsi import Tiling
from ..data.slides import load_slide_set, slide_progress
from ..data.splits import cross_split_duplicates, grouped_split, kfold_splits, stratified_split
from ..data.stain import StainNormalizer
from ..data.transforms import BatchAugment, ImagePreprocess, channel_stats, dihedral_tta
from ..datasets import embedded_path
from ..engine import Trainer
from ..engine import UnfreezeBackbone
from ..engine.checkpoint import load_model_weights
from ..engine.optim import optimizer_factory
from ..engine.inferer import resolve_device
from ..errors import ConfigError, DataError, RunDirError, path_problem
from ..io import atomic_write_text
from ..evaluation import BINARY_EXTRAS, multiclass_metrics, multiclass_scores
from ..models import create_model
from ..models.transfer import load_pretrained, param_groups, resolve_pretrained
from ..engine.distributed import is_main_process
from ..report.predictions import prediction_artefacts, save_predictions
from ..repro import seed_everything
from .common import (
    Stopwatch,
    TrainResult,
    finish_run,
    image_files,
    make_trainer,
    refuse_overwrite,
    run_path,
    run_weights,
    score_predictions,
    start_run,
    write_results,
)
from .trust import check_calibration, prediction_columns, referral, trust, trust_of, uncertainty_columns


__all__ = [
    "PreprocessFile", "preprocess_dict", "load_images", "split_images", "build_trainer", "resident_sets", "train",
    "slide_maps", "report_split", "trace_sources", "show_examples", "log_tensorboard", "load_run", "evaluate",
    "predict",
]


class PreprocessFile(Strict):
    """``preprocess.json`` of an image run: class names, the training pixels' per-channel mean
    and std (0-1 scale), the image side and channel count, and whether labels are grades."""

    classes: list[str] = Field(min_length=2)
    mean: list[float]
    std: list[float]
    size: int = Field(ge=1)
    in_chans: int = Field(ge=1, le=4)
    graded: bool
    fit: Literal["resize", "pad"] = "resize"
    patch: int | None = Field(None, ge=1, description="fit pad: the side patches are padded to before resizing")
    folds: int | None = Field(None, ge=2, description="a k-fold parent: the number of fold runs in folds/")
    members: int | None = Field(None, ge=2, description="an ensemble parent: the number of member runs in members/")
    mpp: float | None = Field(None, gt=0, description="micrometres per pixel of the images the model saw")
    stain: dict | None = Field(None, description="the stain normalisation (method, fitted reference) every image "
                                                 "went through before the model")

    @model_validator(mode="after")
    def _channels(self) -> "PreprocessFile":
        if not len(self.mean) == len(self.std) == self.in_chans:
            raise ValueError(f"mean and std need one value per channel ({self.in_chans})")
        return self


def preprocess_dict(config: ImageRunConfig, data: ImageSet, mean: list[float] | None = None,
                    std: list[float] | None = None, **parent: int) -> dict[str, Any]:
    """What ``preprocess.json`` holds (see :class:`PreprocessFile`). A parent run (``folds`` or
    ``members``) feeds [0, 1] pixels to its children, which normalise them each their own way:
    its mean and std are 0 and 1."""
    c = int(data.images.shape[-1])
    return {"classes": data.classes, "mean": mean if mean is not None else [0.0] * c,
            "std": std if std is not None else [1.0] * c, "size": int(data.images.shape[1]), "in_chans": c,
            "graded": config.data.graded, "fit": config.data.fit, "patch": data.patch, "mpp": config.data.mpp,
            "stain": data.stain, **parent}


def load_images(config: ImageRunConfig, watch: Stopwatch | None = None,
                stain: StainNormalizer | None | bool = True) -> tuple[ImageSet, Path]:
    """The run's images (decoded once through the cache for file layouts; slide tables tiled
    into it) and the input path; ``watch`` gets the seconds as ``decode``, ``cache`` (a cache hit:
    nothing decoded) or ``read`` (array files). ``stain``: the stain normaliser to apply (True:
    the one ``data.stain`` names; a run's own, from its ``preprocess.json``, when evaluating)."""
    t0, phase = time.perf_counter(), "read"
    d = config.data
    path = embedded_path(d.dataset) if d.dataset else Path(d.path)
    if problem := path_problem(path):
        raise DataError(path, problem)
    normalizer = StainNormalizer.create(d.stain, d.stain_reference) if stain is True else stain or None
    layout = detect_image_layout(path, d.layout)
    cache = d.cache_dir or Path(os.environ.get("BIODL_CACHE", Path.home() / ".cache" / "biodl"))
    if layout in ("npz", "npy"):
        data = load_npz(path, d.classes) if layout == "npz" else load_npy_pair(path, d.classes)
        if normalizer is not None:
            data.images = normalizer(np.asarray(data.images))
    elif layout == "slides":
        if d.mpp is None:
            raise DataError(path, "tiles of a slide table need their resolution: data.mpp (micrometres per pixel, "
                                  "e.g. 0.5 for 20x)")
        t = d.tiles
        tiling = Tiling(d.mpp, d.size or 224, t.overlap, t.min_tissue, t.select, t.n, config.seed, t.pen)
        with slide_progress(path) as progress:
            data, hit = load_slide_set(path, tiling, cache, d.classes, t.slide_mpp, normalizer, progress)
        phase = "cache" if hit else "decode"
    else:
        if layout == "csv" and d.images is None:
            raise DataError(path, "a CSV of image,label rows needs the image folder (--images, or data.images); a "
                                  "table of clinical features trains with --config and task: tabular")
        root = Path(d.images).resolve() if layout == "csv" else path
        if not root.is_dir():
            raise DataError(root, "no such folder (data.images: the folder of the CSV's images)")
        files = csv_image_files(path, root) if layout == "csv" else image_paths(root, recursive=True)
        if not files:
            raise DataError(root, "no image files found")
        loaders = {"folder": lambda: load_image_folder(path, size, d.classes, d.skip_bad, d.fit),
                   "patients": lambda: load_patient_tree(path, size, d.classes, d.skip_bad, d.fit),
                   "csv": lambda: load_csv_images(path, root, size, d.classes, d.skip_bad, d.fit)}
        # pad: decode at the patches' own side, then resize to data.size below
        size = default_size(files, root) if d.fit == "pad" else d.size or default_size(files, root)
        params = {"layout": layout, "size": size, "classes": d.classes, "skip_bad": d.skip_bad, "fit": d.fit}
        load = loaders[layout]
        if normalizer is not None:  # normalised once, as decoded: the cache holds the normalised pixels
            params["stain"] = normalizer.to_dict()
            load = _stained(loaders[layout], normalizer)
        data, hit = cached(load, files + ([path] if layout == "csv" else []), params, cache)
        phase = "cache" if hit else "decode"
    data.stain = normalizer.to_dict() if normalizer is not None else None
    if d.fit == "pad":
        data.patch = int(data.images.shape[1])
    if d.size is not None and data.images.shape[1:3] != (d.size, d.size):
        data.images = _resize(data.images, d.size)
    if len(data.classes) < 2:
        raise DataError(path, f"{len(data.classes)} class; a classifier needs two or more")
    if watch is not None:
        watch.add(phase, time.perf_counter() - t0)
    return data, path


def _stained(load, normalizer: StainNormalizer):
    def run() -> ImageSet:
        data = load()
        data.images = normalizer(data.images)
        return data

    return run


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def split_images(config: ImageRunConfig, data: ImageSet, where: Path) -> tuple[dict[str, np.ndarray], str]:
    """(part -> indices, how): official splits, patient-grouped, or stratified."""
    d = config.data
    seed = d.split_seed if d.split_seed is not None else config.seed
    if data.patients is not None and d.group_by_patient:
        missing = np.flatnonzero(np.asarray(data.patients).astype(str) == "")
        if len(missing):
            shown = "; ".join(trace_sources(data, missing[:3]) or [])
            raise DataError(where, f"{len(missing)} image{'s have' if len(missing) > 1 else ' has'} no patient id (an "
                                   f"empty DICOM PatientID: {shown}); splits keep each patient on one side, so every "
                                   "image needs one (data.group_by_patient=false splits by image)")
    if d.split == "kfold":
        groups = data.patients if data.patients is not None and d.group_by_patient else None
        folds = kfold_splits(data.labels, groups, d.folds, d.val_fraction, seed, str(where))
        if d.fold is None:  # the parent of a k-fold run: every image is tested once, by its fold's model
            return {"train": np.array([], int), "val": np.array([], int), "test": np.arange(len(data))}, "kfold"
        return folds[d.fold], f"fold {d.fold + 1} of {d.folds}{', by patient' if groups is not None else ''}"
    if data.split is not None:
        parts = {k: np.flatnonzero(data.split == k) for k in ("train", "val", "test")}
        if all(len(v) for v in parts.values()):
            return parts, "official"
        empty = [k for k, v in parts.items() if not len(v)]
        warnings.warn(f"{where}: the official split has no {' or '.join(empty)} images; all {len(data)} images are "
                      "split anew", stacklevel=2)
    if data.patients is not None and d.group_by_patient:
        return grouped_split(data.labels, data.patients, d.val_fraction, d.test_fraction, seed, str(where)), "patient"
    return stratified_split(data.labels, d.val_fraction, d.test_fraction, seed, str(where), data.classes), "stratified"


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

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = weights.to(out.device) if weights is not None else None
        return torch.nn.functional.cross_entropy(out.float(), y, weight=w)

    unfreeze = (UnfreezeBackbone(m.freeze_epochs),) if m.pretrained and m.freeze_epochs else ()
    return make_trainer(config, model, loss, multiclass_metrics(n_classes, config.data.graded),
                        lambda o: torch.softmax(o, dim=1), run_dir, device, train, make_opt, unfreeze,
                        ("train/loss", "val/loss", "val/accuracy", "val/roc_auc", "val/qwk", "lr"), prep,
                        dihedral_tta if m.tta else None)


def resident_sets(config: ImageRunConfig, data: ImageSet, parts: dict[str, np.ndarray],
                  device: torch.device) -> tuple[dict[str, ImageDataset], dict[str, Any]]:
    """The splits as datasets; with ``data.device_cache`` (see :mod:`~biodl.data.resident`) all of
    them share one copy of the set's pixels on ``device``. Also returns the decision, for the
    manifest."""
    sets = {k: ImageDataset(data, indices=v) for k, v in parts.items()}
    home = decide(config.data.device_cache, data.images, device, config.data.device_cache_share)
    if home.resident:  # one copy, shared (an in-memory set on the CPU is not copied at all)
        pixels = sets["train"].resident(device).pixels
        sets = {k: v.resident(device, pixels) for k, v in sets.items()}
    return sets, home.to_dict()


def _model_name(config: ImageRunConfig, size: int) -> str:
    """The configured model's name; ``auto``: a small ResNet up to 64 px, ResNet-18 above."""
    name = config.model.name
    return ("resnet_small" if size <= 64 else "resnet18") if name == "auto" else name


def _model(config: ImageRunConfig, n_classes: int, in_chans: int, size: int) -> torch.nn.Module:
    return create_model(_model_name(config, size), num_classes=n_classes, in_chans=in_chans, **config.model.args)


def train(config: ImageRunConfig, out: str | Path | None = None, resume: bool = False) -> TrainResult:
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
        return _train_ensemble(config, data, parts, how, out, resume, watch)
    dups = cross_split_duplicates(data.images, parts)
    if dups:
        warnings.warn(f"{path}: {len(dups)} exact duplicate images cross splits (first: rows {dups[0][:2]})",
                      stacklevel=2)
    n_classes, in_chans = len(data.classes), data.images.shape[-1]
    mean, std = channel_stats(data.images, parts["train"])
    pre = preprocess_dict(config, data, mean, std)
    counts = np.bincount(data.labels[parts["train"]], minlength=n_classes)
    if (counts == 0).any():
        empty = [data.classes[i] for i in np.flatnonzero(counts == 0)]
        raise DataError(path, f"classes without training images: {', '.join(empty)}")
    class_weights = torch.tensor(counts.sum() / (n_classes * counts), dtype=torch.float32)
    check_calibration(config, n_classes, config.data.graded)
    balance = config.data.balance
    device = resolve_device(config.trainer.device)
    run_dir = run_path(config, out, resume, device)
    seed_everything(config.seed, config.deterministic)
    model = _model(config, n_classes, in_chans, int(data.images.shape[1]))
    extra = {"split": how, "split_sizes": {k: int(len(v)) for k, v in parts.items()},
             "class_counts": {k: np.bincount(data.labels[v], minlength=n_classes).tolist() for k, v in parts.items()},
             "duplicates_across_splits": [list(map(str, d)) for d in dups[:100]], "n_images": len(data),
             "classes": data.classes, "data_content_sha256": cache_key(data.images)}
    if config.model.pretrained:
        weights = resolve_pretrained(config.model.pretrained, _model_name(config, int(data.images.shape[1])),
                                     config.model.download)
        extra["pretrained"] = {"path": str(weights), **load_pretrained(model, weights)}
    loss_weights = class_weights if balance == "loss" else None
    trainer = build_trainer(config, model, n_classes, loss_weights, pre, run_dir, device)
    sets, extra["device_cache"] = resident_sets(config, data, parts, device)
    manifest = start_run(config, run_dir, resume, device, pre, {"data": path} if path.is_file() else {}, extra)
    draw = class_weights[sets["train"].labels] if balance == "sampler" else None
    with watch("train"):
        trainer.fit(sets["train"], sets["val"], resume=resume, sample_weights=draw)
    with watch("evaluate"):
        metrics = finish_run(trainer, run_dir, sets["val"], sets["test"])
        prob, scores = report_split(trainer, sets["test"], config.data.graded, config.n_boot, "test", run_dir)
        metrics.update(scores)
        val_prob = trainer.predict(sets["val"]).numpy().astype(np.float64)
        rows, patients, sources = _trace(sets["val"])
        if is_main_process():
            save_predictions(run_dir, "val", sets["val"].labels.numpy(), val_prob, data.classes, rows, sources,
                             patients)
        metrics.update(trust(run_dir, config, data.classes, config.data.graded,
                             (sets["val"].labels.numpy(), val_prob), (sets["test"].labels.numpy(), prob),
                             _trace(sets["test"])[1]))
        if is_main_process():
            show_examples(sets["test"], prob, run_dir / "test_examples.png")
            slide_maps(config, data, run_dir, pd.read_csv(run_dir / "test_predictions.csv", keep_default_na=False,
                                                          dtype={"patient": str, "source": str}))
            log_tensorboard(trainer, sets["train"], sets["test"], prob, run_dir / runs.TENSORBOARD)
    write_results(run_dir, metrics, manifest, watch=watch)
    return TrainResult(run_dir, metrics, trainer)


def _train_folds(config: ImageRunConfig, data: ImageSet, path: Path, out, resume: bool,
                 watch: Stopwatch) -> TrainResult:
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
                    resume: bool, watch: Stopwatch) -> TrainResult:
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


def slide_maps(config: ImageRunConfig, data: ImageSet, run_dir: Path, pred: pd.DataFrame) -> list[str]:
    """Slide maps of the test patients (two-class runs whose file names carry patch positions)."""
    from ..report.slides import write_slide_maps

    if len(data.classes) != 2 or not config.data.coordinates or not is_main_process():
        return []
    return write_slide_maps(run_dir, data.images, pred, data.classes[1], config.data.coordinates)


def report_split(trainer: Trainer, data: ImageDataset, graded: bool, n_boot: int, prefix: str,
                 out_dir: Path | None) -> tuple[np.ndarray, dict[str, float]]:
    """95% bootstrap CIs of the metrics on ``data`` (resampling patients when the set has patient
    ids, else images) and the expected calibration error; with ``out_dir``, also
    ``<prefix>_predictions.csv`` with each image's row, file and patient (from which the report
    derives its tables and figures), each image's predictive entropy (and with MC dropout the
    passes' mutual information), and the referral curve by each. Returns (test probabilities
    (N, K), metrics)."""
    samples = trainer.predict_passes(data).numpy().astype(np.float64)
    prob, parts = samples.mean(axis=0), uncertainty_columns(samples)
    rows, patients, sources = _trace(data)
    y = data.labels.numpy()
    # two classes: the positive class's F1, predictive values, sensitivity, specificity and PR AUC too
    metrics = score_predictions(y, prob, data.classes, lambda a, b: multiclass_scores(a, b, graded), n_boot, prefix,
                                out_dir, rows=rows, patients=patients, sources=sources, points=BINARY_EXTRAS,
                                after=parts)
    if out_dir is not None:
        metrics.update(referral(out_dir, y, prob, parts, prefix, patients))
    return prob, metrics


def _trace(data: ImageDataset) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """(row in the data set, patient or None, source file or None) of each sample of ``data``."""
    rows = data.indices.numpy() if data.indices is not None else np.arange(len(data))
    patients = None if data.data.patients is None else np.asarray(data.data.patients)[rows]
    return rows, patients, trace_sources(data.data, rows)


def trace_sources(data: ImageSet, rows: np.ndarray) -> list[str] | None:
    """Where each of ``rows`` came from: its file relative to the files' common folder, or for an
    array file (npz, X.npy) ``<file name>#<row>``; None when the set does not say."""
    src = data.sources
    if src and len(src) == len(data.labels):
        root = os.path.commonpath(src) if len(src) > 1 else os.path.dirname(src[0])
        return [os.path.relpath(src[i], root) for i in rows]
    if src:
        return [f"{Path(src[0]).name}#{i}" for i in rows]
    return None


def _part(data: ImageDataset, n: int) -> ImageDataset:
    """The first ``n`` samples of ``data``, as a view."""
    rows = data.indices if data.indices is not None else torch.arange(len(data))
    return ImageDataset(data.data, indices=rows[:n].numpy())


def show_examples(data: ImageDataset, prob: np.ndarray, path: Path, n: int = 8) -> None:
    """``path``: a figure of the ``n`` most confident right and the ``n`` most confident wrong
    predictions on ``data`` (probabilities ``prob``, (N, K)), captioned true -> predicted (p)."""
    from ..report.figures import image_examples

    y, pred, conf = data.labels.numpy(), prob.argmax(axis=1), prob.max(axis=1)
    order = np.argsort(-conf, kind="stable")
    right = [i for i in order if pred[i] == y[i]][:n]
    wrong = [i for i in order if pred[i] != y[i]][:n]
    picks = right + wrong
    if not picks:
        return
    images = data.on_host()[torch.as_tensor(picks)][0].movedim(1, -1).numpy()
    c = data.classes
    image_examples(images, [f"{c[y[i]]} → {c[pred[i]]} ({conf[i]:.2f})" for i in picks],
                   ["#1a7f37"] * len(right) + ["#cf222e"] * len(wrong),
                   f"{len(right)} most confident right, {len(wrong)} most confident wrong", path)


def log_tensorboard(trainer: Trainer, train_set: ImageDataset, test: ImageDataset, prob: np.ndarray, log_dir: Path,
                    n_embed: int = 1000) -> None:
    """TensorBoard extras: 64 training images, the graph, per-class PR curves on ``test`` and the
    projector of up to ``n_embed`` test images' penultimate-layer features."""
    from ..report.tensorboard import last_linear, log_extras, thumbnails

    grid = train_set.on_host()[torch.arange(min(64, len(train_set)))][0]
    part = _part(test, n_embed)
    head = last_linear(trainer.module)
    embedding = None
    if head is not None and len(part):
        feats = trainer.layer_inputs(part, head)
        y, pred, c = part.labels.numpy(), prob[: len(part)].argmax(axis=1), test.classes
        meta = [[c[a], c[b], "yes" if a == b else "no"] for a, b in zip(y, pred, strict=True)]
        embedding = (feats, meta, ["true", "predicted", "correct"], thumbnails(part[torch.arange(len(part))][0]))
    example = trainer.prepare_batch(grid[:2])
    log_extras(log_dir, step=trainer.epoch, images=grid, graph=(trainer.module, example),
               pr=(test.labels.numpy(), prob, test.classes), embedding=embedding)


def load_run(run_dir: str | Path, checkpoint: str = "best") -> tuple[ImageRunConfig, dict[str, Any], Trainer]:
    run_dir = Path(run_dir)
    config = runs.load_run_config(run_dir)
    pre = runs.read_preprocess(run_dir, PreprocessFile, "image").model_dump()
    if pre["folds"] or pre["members"]:  # a k-fold or ensemble parent: its child models together
        from ..models.ensemble import ProbabilityMean
        children = ([runs.fold_dir(run_dir, k) for k in range(pre["folds"])] if pre["folds"] else
                    [runs.member_dir(run_dir, k) for k in range(pre["members"])])
        members = [load_run(child, checkpoint) for child in children]
        # folds: each fold model recalibrated by its own map; an ensemble: the parent's map, on the mean
        model = ProbabilityMean([t.module for _, _, t in members], [p["mean"] for _, p, _ in members],
                                [p["std"] for _, p, _ in members],
                                [runs.read_calibration(child) for child in children] if pre["folds"] else None)
    else:
        tensors, source = run_weights(run_dir, checkpoint)
        model = _model(config, len(pre["classes"]), pre["in_chans"], pre["size"])
        load_model_weights(model, tensors, source)
    return config, pre, build_trainer(config, model, len(pre["classes"]), None, pre, None,
                                      resolve_device(config.trainer.device), train=False)


def evaluate(run_dir: str | Path, data: str | Path | None = None, checkpoint: str = "best",
             overwrite: bool = False) -> tuple[dict[str, float], Path]:
    """Metrics (with CIs) of a trained run on its own test split."""
    run_dir = Path(run_dir)
    config, pre, trainer = load_run(run_dir, checkpoint)
    if data is None and pre["folds"]:
        raise RunDirError(run_dir, "a k-fold run's test results are its out-of-fold predictions (metrics.json, "
                                   "test_predictions.csv); evaluate it on other patients with --data, or evaluate "
                                   "a fold run in folds/")
    if data is not None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"path": Path(data),
                                                                                    "dataset": None})})
    images, path = load_images(config, stain=StainNormalizer.from_dict(pre["stain"]))
    parts = split_images(config, images, path)[0] if data is None else None
    name = "test" if data is None else Path(data).stem
    out = run_dir / "evaluation" / f"{name}.json"
    refuse_overwrite(out, overwrite)
    test = ImageDataset(images, indices=parts["test"] if data is None else None)
    metrics = trainer.evaluate(test, prefix=name)
    out.parent.mkdir(exist_ok=True)
    prob, scores = report_split(trainer, test, pre["graded"], config.n_boot, name, out.parent)
    metrics.update(scores)
    metrics.update(trust_of(run_dir, name, test.labels.numpy(), prob, config.n_boot, _trace(test)[1],
                            pre["classes"], out.parent / f"{name}_predictions.csv"))
    prediction_artefacts(out.parent, name)
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out


def predict(run_dir: str | Path, input_path: str | Path, out: str | Path | None = None, checkpoint: str = "best",
            overwrite: bool = False) -> Path:
    """Class probabilities for an image file or every image in a folder, as CSV."""
    run_dir, input_path = Path(run_dir), Path(input_path)
    _, pre, trainer = load_run(run_dir, checkpoint)
    files = image_files(input_path, EXTENSIONS)
    out = Path(out) if out is not None else run_dir / "predictions" / f"{input_path.stem}.csv"
    refuse_overwrite(out, overwrite)
    root = input_path if input_path.is_dir() else input_path.parent
    pad = pre["fit"] == "pad" and pre["patch"] is not None  # patches: pad edge crops as in training, then resize
    images, kept = decode_images(files, pre["patch"] if pad else pre["size"], root, fit=pre["fit"])
    if (normalizer := StainNormalizer.from_dict(pre["stain"])) is not None:  # as in training: before any resize
        images = normalizer(images)
    if pad and pre["patch"] != pre["size"]:
        images = _resize(images, pre["size"])
    if images.shape[-1] != pre["in_chans"]:
        images = images[..., : pre["in_chans"]] if pre["in_chans"] < 3 else images
    labels = np.zeros(len(images), dtype=np.int64)
    samples = trainer.predict_passes(ImageDataset(ImageSet(images, labels, pre["classes"]))).numpy().astype(np.float64)
    df = prediction_columns(run_dir, pre["classes"], samples)
    df.insert(0, "image", [str(files[i].relative_to(root)) for i in kept])  # as given under the input folder
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, df.to_csv(index=False, float_format="%.6f"))
    return out
