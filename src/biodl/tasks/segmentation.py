"""Binary segmentation of fundus images (retinal vessels) with a U-Net.

Data: CHASE_DB1, DRIVE or images/ + masks/ [+ fov/] (``biodl.data.vessels``); FOV masks are
derived when absent. Preprocessing: green channel (or RGB), CLAHE, standardised with the
training FOV pixels' mean and std. Training: random patches centred inside the FOV, flipped
and rotated with their masks, brightness/contrast jitter on the device; loss BCE + Dice
(MONAI's). Inference: the whole image in overlapping tiles, blended. Metrics inside the FOV
only, per test image and averaged, at 0.5 and at the F1-optimal threshold chosen on the
training images; the second observer, where there is one, is scored the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from .. import runs
from ..config import Positive, SegmentationRunConfig, Strict
from ..data.cache import content_key
from ..data.folders import image_paths
from ..data.transforms import FlipMean, flip_tta_map
from ..data.vessels import (IMAGE_EXT, VesselCase, chase_files, derive_fov, detect_layout, folder_files, load_drive,
                            patient_of, prepare_fundus, read_cases, read_image)
from ..datasets import embedded_path
from ..engine import BestCheckpoint
from ..engine.checkpoint import load_model_weights, model_state
from ..engine.distributed import is_main_process
from ..engine.inferer import Inferer
from ..engine.trainer import resolve_device
from ..errors import ConfigError, DataError, RunDirError, path_problem
from ..models import create_model
from ..repro import seed_everything
from .common import Run, Stopwatch, image_files, make_trainer, refuse_overwrite, run_path, start_run, write_results
from .segmentation_report import case_metrics, predict_map, write_test_report


__all__ = ["PreprocessFile", "load_cases", "draw_patches", "Normalise", "eval_forward", "network", "train", "evaluate",
           "SegmentationEnd", "END"]


class PreprocessFile(Strict):
    """``preprocess.json`` of a segmentation run: the input channels, CLAHE, the training FOV
    pixels' per-channel mean and std, and the names of the training and test images."""

    channels: Literal["green", "rgb"]
    clahe: bool
    mean: list[float]
    std: list[Positive]
    in_chans: int = Field(ge=1, le=3)
    train: list[str]
    test: list[str]

    @model_validator(mode="after")
    def _channels(self) -> "PreprocessFile":
        if not len(self.mean) == len(self.std) == self.in_chans:
            raise ValueError(f"mean and std need one value per channel ({self.in_chans})")
        return self


def threshold(run_dir: Path) -> float:
    """The run's F1-optimal threshold (chosen on the training images), else 0.5."""
    t = runs.read_metrics(run_dir / runs.METRICS).get("threshold_f1_train")
    if t is not None and not 0 <= t <= 1:
        raise RunDirError(run_dir / runs.METRICS, f"threshold_f1_train: {t} is not a probability")
    return 0.5 if t is None else t


def load_cases(config: SegmentationRunConfig) -> tuple[list[VesselCase], list[VesselCase], Path]:
    """(training cases, test cases, data path) by the layout's protocol."""
    d = config.data
    root = embedded_path(d.dataset) if d.dataset else Path(d.path)
    if not root.is_dir():
        raise DataError(root, path_problem(root) or "not a folder")
    layout = detect_layout(root) if d.layout == "auto" else d.layout
    if layout == "drive":
        return load_drive(root, "training"), load_drive(root, "test"), root
    files = chase_files(root) if layout == "chase" else folder_files(root)  # the split is checked before any read
    if len(files) <= d.test_images:
        raise DataError(root, f"{len(files)} images: too few for {d.test_images} test images and a training set")
    names = [f[0] for f in files]
    train, test = names[: -d.test_images], names[-d.test_images:]
    if shared := sorted({patient_of(n) for n in train} & {patient_of(n) for n in test}):
        both = [n for n in names if patient_of(n) in shared]
        raise ConfigError("data.test_images", f"{d.test_images} puts the eyes of {', '.join(shared)} in both training "
                          f"and test ({', '.join(both)}); choose a number that keeps each patient on one side")
    cases = read_cases(files)
    return cases[: -d.test_images], cases[-d.test_images:], root


def draw_patches(images: list[np.ndarray], masks: list[np.ndarray], fovs: list[np.ndarray], n: int, size: int,
                 seed: int, augment: bool, vessel_fraction: float = 0.0) -> tuple[Tensor, Tensor]:
    """``n`` (size x size) patches centred on FOV pixels drawn uniformly over all training FOV
    pixels (a ``vessel_fraction`` of them on vessel pixels of the FOV); with ``augment`` each gets
    a random flip/90-degree rotation (its mask too).
    Returns (n, C, size, size) uint8 and (n, 1, size, size) uint8."""
    rng = np.random.default_rng(seed)
    half = size // 2
    pads = [np.pad(im, ((0, 0), (half, half), (half, half)), mode="reflect") for im in images]
    mpads = [np.pad(m, ((half, half), (half, half))) for m in masks]
    where = [np.flatnonzero(f) for f in fovs]
    sizes = np.array([len(w) for w in where], dtype=np.float64)
    which = rng.choice(len(images), n, p=sizes / sizes.sum())
    on_vessel = rng.random(n) < vessel_fraction if vessel_fraction > 0 else np.zeros(n, bool)
    vessels = [np.flatnonzero(m.astype(bool) & f) for m, f in zip(masks, fovs, strict=True)] if on_vessel.any() else []
    xs = np.empty((n, images[0].shape[0], size, size), np.uint8)
    ys = np.empty((n, 1, size, size), np.uint8)
    for i, k in enumerate(which):
        pool = vessels[k] if on_vessel[i] and len(vessels[k]) else where[k]
        r, c = divmod(int(pool[rng.integers(len(pool))]), fovs[k].shape[1])
        x = pads[k][:, r:r + size, c:c + size]
        y = mpads[k][r:r + size, c:c + size]
        if augment:
            t, flip = int(rng.integers(4)), bool(rng.integers(2))
            x, y = np.rot90(x, t, (1, 2)), np.rot90(y, t)
            if flip:
                x, y = x[:, :, ::-1], y[:, ::-1]
        xs[i] = np.round(x * 255)
        ys[i, 0] = y
    return torch.from_numpy(xs), torch.from_numpy(ys)


class Normalise(nn.Module):
    """uint8 patches -> standardised floats; in training, brightness/contrast jitter per patch."""

    def __init__(self, mean: list[float], std: list[float], jitter: bool) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.jitter = jitter

    def forward(self, x: Tensor, train: bool = False) -> Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if train and self.jitter:
            b = x.shape[0]
            contrast = torch.empty(b, 1, 1, 1, device=x.device).uniform_(0.8, 1.2)
            bright = torch.empty(b, 1, 1, 1, device=x.device).uniform_(-0.08, 0.08)
            mid = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mid) * contrast + mid + bright).clamp(0, 1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def _loss():
    from monai.losses import DiceLoss

    dice = DiceLoss(sigmoid=True, batch=True)

    def loss(out: Tensor, y: Tensor) -> Tensor:
        y = y.to(out.dtype)
        return nn.functional.binary_cross_entropy_with_logits(out.float(), y.float()) + dice(out.float(), y.float())

    return loss


def eval_forward(config: SegmentationRunConfig):
    """How the run's network predicts a tile: the mean over its 4 flips with ``model.tta``, else
    one pass (None)."""
    return flip_tta_map if config.model.tta else None


def network(config: SegmentationRunConfig, in_chans: int) -> nn.Module:
    """The run's network, untrained (a U-Net by default)."""
    return create_model(config.model.name, in_chans=in_chans, **config.model.args)


def train(config: SegmentationRunConfig, out: str | Path | None = None, resume: bool = False) -> Run:
    """Load the cases, fit the normalisation on the training FOV pixels, train on patches, and report the test
    images (FOV-only metrics with patient-resampled CIs)."""
    d = config.data
    watch = Stopwatch()
    with watch("decode"):
        train_cases, test_cases, root = load_cases(config)
        prepared = {c.name: prepare_fundus(c.image, d.channels, d.clahe) for c in [*train_cases, *test_cases]}
    pix = np.concatenate([prepared[c.name][:, c.fov].T for c in train_cases])
    mean, std = pix.mean(0).tolist(), np.maximum(pix.std(0), 1e-3).tolist()
    pre = {"channels": d.channels, "clahe": d.clahe, "mean": mean, "std": std, "in_chans": len(mean),
           "train": [c.name for c in train_cases], "test": [c.name for c in test_cases]}
    device = resolve_device(config.trainer.device)
    files = image_paths(root, recursive=True, extensions=IMAGE_EXT)
    run_dir = run_path(config, out, resume, device)
    seed_everything(config.seed, config.deterministic)
    model = network(config, len(mean))
    norm = Normalise(mean, std, d.augment)
    trainer = make_trainer(config, model, _loss(), None, torch.sigmoid, run_dir, device,
                           show=("train/loss", "lr"), batch_transform=norm,
                           eval_forward=eval_forward(config))
    manifest = start_run(config, run_dir, resume, device, pre, {}, {
        "split": f"{len(train_cases)} train / {len(test_cases)} test", "data_path": str(root),
        "data_content_sha256": content_key(files, {}), "n_files": len(files),
        "fov_derived": sum(c.fov_derived for c in [*train_cases, *test_cases])})
    with watch("train"):
        xs, ys = draw_patches([prepared[c.name] for c in train_cases], [c.mask for c in train_cases],
                              [c.fov for c in train_cases], d.patches, d.patch, config.seed, d.augment,
                              d.vessel_fraction)
        trainer.fit(torch.utils.data.TensorDataset(xs, ys), None, resume=resume)
        del xs, ys
    best = next((c for c in trainer.callbacks if isinstance(c, BestCheckpoint)), None)
    prefix = run_dir / runs.CHECKPOINTS / "best"
    if best is not None and prefix.with_suffix(".json").exists():  # the best epoch by trainer.monitor
        load_model_weights(trainer.module, model_state(prefix), prefix.with_suffix(".safetensors"))
    best_epoch = (best.best_epoch if best is not None else None) or trainer.epoch
    metrics: dict[str, float] = {"epochs_trained": float(trainer.epoch), "best_epoch": float(best_epoch)}
    if is_main_process():
        with watch("evaluate"):
            metrics.update(write_test_report(run_dir, trainer.inferer, config, train_cases, test_cases, prepared,
                                             watch))
    write_results(run_dir, metrics, manifest, watch=watch)
    return Run(run_dir, metrics, trainer)


def evaluate(predictor, data: str | Path | None = None, overwrite: bool = False) -> tuple[dict[str, float], Path]:
    """Test metrics of a trained run (``predictor``: :func:`biodl.load`) again: its own test images, or
    another folder's (CHASE_DB1, DRIVE or images/ + masks/ layout)."""
    run_dir, config = predictor.run_dir, predictor.config
    if data is not None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"path": Path(data),
                                                                                    "dataset": None})})
    _, test_cases, _ = load_cases(config)
    name = "test" if data is None else Path(data).name
    out = run_dir / runs.EVALUATION / f"{name}.json"
    refuse_overwrite(out, overwrite)
    _, metrics, _ = case_metrics(predictor.members[0].inferer, config, test_cases, predictor.threshold, name)
    out.parent.mkdir(exist_ok=True)
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out


# ----------------------------------------------------------------------------- the inference end


class SegmentationEnd:
    """The segmentation task's end for :mod:`biodl.inference.predictor`: fundus images (files,
    folders, or (H, W, 3) uint8 arrays) -> one vessel probability map each, by overlapping tiles."""

    output = "map"
    preprocess = PreprocessFile

    def classes(self, pre: PreprocessFile) -> list[str]:
        return ["background", "vessel"]

    def network(self, config: SegmentationRunConfig, pre: PreprocessFile) -> nn.Module:
        return network(config, pre.in_chans)

    def inferer(self, config: SegmentationRunConfig, pre: PreprocessFile, module: nn.Module,
                device: torch.device) -> Inferer:
        return Inferer(module, device=device, precision=config.trainer.precision,
                       batch_transform=Normalise(pre.mean, pre.std, False), postprocess=torch.sigmoid,
                       eval_forward=eval_forward(config),
                       batch_size=config.data.batch_size, num_workers=config.data.num_workers, seed=config.seed)

    def read(self, pre: PreprocessFile, inputs: Any) -> tuple[list[np.ndarray], pd.DataFrame]:
        """Every image read and checked before any is predicted."""
        if isinstance(inputs, np.ndarray):
            images = [inputs] if inputs.ndim == 3 else list(inputs)
            if any(im.ndim != 3 or im.shape[-1] != 3 or im.dtype != np.uint8 for im in images):
                raise DataError("images", "expected RGB fundus images, uint8 (H, W, 3)")
            return images, pd.DataFrame({"image": [f"array[{i}]" for i in range(len(images))]})
        paths = [Path(p) for p in inputs] if isinstance(inputs, (list, tuple)) else [Path(inputs)]
        files = [f for p in paths for f in image_files(p, IMAGE_EXT)]
        return [read_image(f) for f in files], pd.DataFrame({"image": [f.stem for f in files]})

    def map(self, inferer: Inferer, config: SegmentationRunConfig, pre: PreprocessFile, image: np.ndarray
            ) -> np.ndarray:
        """(H, W, 3) uint8 -> (H, W) vessel probability (the run's channels, CLAHE, tiles)."""
        return predict_map(inferer, prepare_fundus(image, pre.channels, pre.clahe), config.data.tile,
                           config.data.overlap)

    def fov(self, image: np.ndarray) -> np.ndarray:
        return derive_fov(image)

    def mask(self, prob: np.ndarray, image: np.ndarray, t: float) -> np.ndarray:
        """Vessels: the probability at the threshold, inside the field of view."""
        return (prob >= t) & derive_fov(image)

    def threshold(self, run_dir: Path) -> float:
        return threshold(run_dir)

    def module(self, inferer: Inferer, pre: PreprocessFile, tta: bool = True) -> nn.Module:
        """(B, C, H, W) normalised -> (B, 1, H, W) logits; with ``tta`` and a run with ``model.tta``,
        of the mean probability over each input's 4 flips."""
        return FlipMean(inferer.module) if tta and inferer.eval_forward is flip_tta_map else inferer.module


#: the segmentation task's inference end
END = SegmentationEnd()
