"""The data of image runs: any supported layout -> cached uint8 arrays -> splits; what
``preprocess.json`` records of them; and the image task's inference end (new images read as the
run saw its own, the network, its inferer) for :mod:`biodl.inference.predictor`.

Splits: the data set's official ones when it has them (MedMNIST); otherwise stratified
train/val/test, grouped by patient whenever patient ids exist (or k folds, grouped the same way).
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
from pydantic import Field, model_validator
from torch import nn

from ..config import ImageRunConfig, Positive, Strict
from ..data.arrays import ImageDataset, ImageSet, load_npy_pair, load_npz
from ..data.cache import cached
from ..data.folders import (EXTENSIONS, csv_image_files, decode_images, image_paths, load_csv_images,
                            load_image_folder, load_patient_tree)
from ..data.layouts import default_size, detect_image_layout
from ..data.resident import decide
from ..data.slides import load_slide_set, slide_progress
from ..data.splits import grouped_split, kfold_splits, stratified_split
from ..data.stain import StainNormalizer
from ..data.transforms import ImagePreprocess, dihedral_tta
from ..data.tiles import Tiling
from ..datasets import embedded_path
from ..engine.inferer import Inferer
from ..errors import DataError, path_problem
from ..models import create_model
from .common import SoftmaxEnd, Stopwatch, image_files

__all__ = [
    "PreprocessFile", "preprocess_dict", "load_images", "resize_images", "split_images", "resident_sets",
    "model_name", "network", "trace", "trace_sources", "read_images", "ImageEnd", "END",
]


class PreprocessFile(Strict):
    """``preprocess.json`` of an image run: class names, the training pixels' per-channel mean
    and std (0-1 scale), the image side and channel count, and whether labels are grades."""

    classes: list[str] = Field(min_length=2)
    mean: list[float]
    std: list[Positive]
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
        try:
            StainNormalizer.from_dict(self.stain)
        except DataError as exc:
            raise ValueError(f"stain {exc.problem}") from None
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
            data, hit = load_slide_set(path, tiling, cache, d.classes, t.slide_mpp, normalizer, progress,
                                       t.override_mpp)
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
        data.images = resize_images(data.images, d.size)
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


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, size, size, C) uint8, bilinear with antialiasing (as training resized)."""
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


def model_name(config: ImageRunConfig, size: int) -> str:
    """The configured model's name; ``auto``: a small ResNet up to 64 px, ResNet-18 above."""
    name = config.model.name
    return ("resnet_small" if size <= 64 else "resnet18") if name == "auto" else name


def network(config: ImageRunConfig, n_classes: int, in_chans: int, size: int) -> torch.nn.Module:
    """The run's network, untrained: ``model.name`` (see :func:`model_name`) with ``model.args``."""
    return create_model(model_name(config, size), num_classes=n_classes, in_chans=in_chans, **config.model.args)


def trace(data: ImageDataset) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
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


# ----------------------------------------------------------------------------- the inference end


class _PixelNet(nn.Module):
    """(B, C, H, W) floats in [0, 1] -> (B, K) logits: the network behind the run's normalisation
    (and with ``tta``, its test-time augmentation)."""

    def __init__(self, inferer, tta: bool) -> None:
        super().__init__()
        self.model, self.normalise = inferer.module, inferer.batch_transform
        self.forward_fn = inferer.eval_forward if tta else (lambda m, x: m(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_fn(self.model, self.normalise(x.float(), False))


def read_images(pre: PreprocessFile, inputs: Any) -> tuple[np.ndarray, list[str]]:
    """(N, size, size, in_chans) uint8 pixels as the run saw its images, and a name for each:
    ``inputs`` an image file, a folder of them (every image under it), a list of files, or uint8
    arrays (N, H, W, C) or (H, W, C). Files are decoded as the run's were (resized to its side,
    or for patches, padded to their side first); then the run's stain normalisation, the resize to
    its side, and its channels."""
    pad = pre.fit == "pad" and pre.patch is not None  # patches: pad edge crops as in training, then resize
    if isinstance(inputs, np.ndarray):
        images = inputs[None] if inputs.ndim == 3 else inputs
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[1] != images.shape[2]:
            raise DataError("images", f"expected square uint8 images (N, H, W, C), got {images.dtype} "
                                      f"{tuple(inputs.shape)}")
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        names = [f"array[{i}]" for i in range(len(images))]
    else:
        paths = [Path(p) for p in inputs] if isinstance(inputs, (list, tuple)) else [Path(inputs)]
        files = [f for p in paths for f in image_files(p, EXTENSIONS)]
        root = paths[0] if len(paths) == 1 and paths[0].is_dir() else Path(os.path.commonpath(
            [str(f.parent) for f in files]))
        images, kept = decode_images(files, pre.patch if pad else pre.size, root, fit=pre.fit)
        names = [str(files[i].relative_to(root)) for i in kept]  # as given under the input folder
    if (normalizer := StainNormalizer.from_dict(pre.stain)) is not None:  # as in training: before any resize
        images = normalizer(np.ascontiguousarray(images[..., :3]))
    if images.shape[1] != pre.size:
        images = resize_images(images, pre.size)
    if images.shape[-1] != pre.in_chans:
        images = images[..., : pre.in_chans] if pre.in_chans < 3 else images
    return np.ascontiguousarray(images), names


class ImageEnd(SoftmaxEnd):
    """The image task's end for :mod:`biodl.inference.predictor`."""

    preprocess = PreprocessFile

    def network(self, config: ImageRunConfig, pre: PreprocessFile) -> nn.Module:
        return network(config, len(pre.classes), pre.in_chans, pre.size)

    def inferer(self, config: ImageRunConfig, pre: PreprocessFile, module: nn.Module, device: torch.device):
        return Inferer(module, device=device, precision=config.trainer.precision,
                       batch_transform=ImagePreprocess(pre.mean, pre.std), postprocess=softmax,
                       eval_forward=dihedral_tta if config.model.tta else None, batch_size=config.data.batch_size,
                       num_workers=config.data.num_workers, mc_dropout=config.model.mc_dropout, seed=config.seed)

    def read(self, pre: PreprocessFile, inputs: Any) -> tuple[ImageDataset, pd.DataFrame]:
        images, names = read_images(pre, inputs)
        return ImageDataset(ImageSet(images, np.zeros(len(images), np.int64), list(pre.classes))), \
            pd.DataFrame({"image": names})

    def module(self, inferer: Inferer, pre: PreprocessFile, tta: bool = True) -> nn.Module:
        return _PixelNet(inferer, tta)

    def export_sample(self, predictor: Any) -> tuple[np.ndarray, Any, dict, dict]:
        """For ``biodl export``: (the test split as the graph's input, as :meth:`read` takes it, the
        input's description, the preprocessing's)."""
        from ..data.stain import StainNormalizer
        from ..errors import ConfigError

        pre, config = predictor.pre, predictor.config
        if pre.stain:
            raise ConfigError("--format", "the run normalises stain (data.stain) before its model, which an ONNX "
                                          "graph cannot do; export a run trained without data.stain")
        data, path = load_images(config, stain=StainNormalizer.from_dict(pre.stain))
        rows = split_images(config, data, path)[0]["test"]
        inputs = np.ascontiguousarray(np.asarray(data.images[rows])[..., : pre.in_chans])
        size, c = int(pre.size), int(pre.in_chans)
        tta = " (with test-time augmentation)" if config.model.tta else ""
        first = {"name": "images", "dtype": "uint8", "shape": ["batch", size, size, c],
                 "layout": "NHWC, RGB order as decoded (Pillow), no scaling"}
        preprocessing = {"inside_graph": f"x / 255, minus mean, over std (per channel, each network its own), the "
                                         f"networks{tta}, the recalibration, softmax",
                         "mean": pre.mean, "std": pre.std,
                         "resize_before": f"{size} x {size} px (bilinear), as training did", "mpp": pre.mpp}
        return inputs, ImageDataset(data, indices=rows), first, preprocessing


def softmax(out: torch.Tensor) -> torch.Tensor:
    """(B, K) logits -> (B, K) probabilities."""
    return torch.softmax(out, dim=1)


#: the image task's inference end
END = ImageEnd()
