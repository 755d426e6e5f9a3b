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
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from .. import runs
from ..config import SegmentationRunConfig, Strict
from ..data.cache import content_key
from ..data.folders import image_paths
from ..data.vessels import (IMAGE_EXT, VesselCase, derive_fov, detect_layout, load_chase, load_drive, load_folder,
                            patient_of, prepare_fundus, read_image)
from ..datasets import embedded_path
from ..engine import BestCheckpoint
from ..engine.checkpoint import load_checkpoint, load_model_weights
from ..engine.distributed import is_main_process
from ..engine.inferer import resolve_device
from ..errors import ConfigError, DataError, RunDirError, path_problem
from ..io import atomic_write_json
from ..models import create_model
from ..repro import seed_everything
from .common import (Stopwatch, TrainResult, image_files, make_trainer, refuse_overwrite, run_path,
                     run_weights, start_run, write_results)
from .segmentation_report import predict_map, case_metrics, write_test_report


__all__ = ["PreprocessFile", "load_cases", "draw_patches", "Normalise", "train", "load_run", "evaluate", "predict"]


class PreprocessFile(Strict):
    """``preprocess.json`` of a segmentation run: the input channels, CLAHE, the training FOV
    pixels' per-channel mean and std, and the names of the training and test images."""

    channels: Literal["green", "rgb"]
    clahe: bool
    mean: list[float]
    std: list[float]
    in_chans: int = Field(ge=1, le=3)
    train: list[str]
    test: list[str]

    @model_validator(mode="after")
    def _channels(self) -> "PreprocessFile":
        if not len(self.mean) == len(self.std) == self.in_chans:
            raise ValueError(f"mean and std need one value per channel ({self.in_chans})")
        return self


def _threshold(run_dir: Path) -> float:
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
    cases = load_chase(root) if layout == "chase" else load_folder(root)
    if len(cases) <= d.test_images:
        raise DataError(root, f"{len(cases)} images: too few for {d.test_images} test images and a training set")
    train, test = cases[: -d.test_images], cases[-d.test_images:]
    if shared := sorted({patient_of(c.name) for c in train} & {patient_of(c.name) for c in test}):
        both = [c.name for c in cases if patient_of(c.name) in shared]
        raise ConfigError("data.test_images", f"{d.test_images} puts the eyes of {', '.join(shared)} in both training "
                          f"and test ({', '.join(both)}); choose a number that keeps each patient on one side")
    return train, test, root


def draw_patches(images: list[np.ndarray], masks: list[np.ndarray], fovs: list[np.ndarray], n: int, size: int,
                 seed: int, augment: bool) -> tuple[Tensor, Tensor]:
    """``n`` (size x size) patches centred on FOV pixels drawn uniformly over all training FOV
    pixels; with ``augment`` each gets a random flip/90-degree rotation (its mask too).
    Returns (n, C, size, size) uint8 and (n, 1, size, size) uint8."""
    rng = np.random.default_rng(seed)
    half = size // 2
    pads = [np.pad(im, ((0, 0), (half, half), (half, half)), mode="reflect") for im in images]
    mpads = [np.pad(m, ((half, half), (half, half))) for m in masks]
    where = [np.flatnonzero(f) for f in fovs]
    sizes = np.array([len(w) for w in where], dtype=np.float64)
    which = rng.choice(len(images), n, p=sizes / sizes.sum())
    xs = np.empty((n, images[0].shape[0], size, size), np.uint8)
    ys = np.empty((n, 1, size, size), np.uint8)
    for i, k in enumerate(which):
        r, c = divmod(int(where[k][rng.integers(len(where[k]))]), fovs[k].shape[1])
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


def _model(config: SegmentationRunConfig, in_chans: int) -> nn.Module:
    return create_model(config.model.name, in_chans=in_chans, **config.model.args)


def train(config: SegmentationRunConfig, out: str | Path | None = None, resume: bool = False) -> TrainResult:
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
    model = _model(config, len(mean))
    norm = Normalise(mean, std, d.augment)
    trainer = make_trainer(config, model, _loss(), None, torch.sigmoid, run_dir, device,
                           show=("train/loss", "lr"), batch_transform=norm)
    manifest = start_run(config, run_dir, resume, device, pre, {}, {
        "split": f"{len(train_cases)} train / {len(test_cases)} test", "data_path": str(root),
        "data_content_sha256": content_key(files, {}), "n_files": len(files),
        "fov_derived": sum(c.fov_derived for c in [*train_cases, *test_cases])})
    with watch("train"):
        xs, ys = draw_patches([prepared[c.name] for c in train_cases], [c.mask for c in train_cases],
                              [c.fov for c in train_cases], d.patches, d.patch, config.seed, d.augment)
        trainer.fit(torch.utils.data.TensorDataset(xs, ys), None, resume=resume)
        del xs, ys
    best = next((c for c in trainer.callbacks if isinstance(c, BestCheckpoint)), None)
    prefix = run_dir / runs.CHECKPOINTS / "best"
    if best is not None and prefix.with_suffix(".json").exists():  # the best epoch by trainer.monitor
        load_model_weights(trainer.module, load_checkpoint(prefix)[0], prefix.with_suffix(".safetensors"))
    best_epoch = (best.best_epoch if best is not None else None) or trainer.epoch
    metrics: dict[str, float] = {"epochs_trained": float(trainer.epoch), "best_epoch": float(best_epoch)}
    if is_main_process():
        with watch("evaluate"):
            metrics.update(write_test_report(run_dir, trainer, config, train_cases, test_cases, prepared))
    write_results(run_dir, metrics, manifest, watch=watch)
    return TrainResult(run_dir, metrics, trainer)


def load_run(run_dir: str | Path, checkpoint: str = "best"):
    run_dir = Path(run_dir)
    config = runs.load_run_config(run_dir)
    pre = runs.read_preprocess(run_dir, PreprocessFile, "segmentation").model_dump()
    tensors, source = run_weights(run_dir, checkpoint)
    model = _model(config, pre["in_chans"])
    load_model_weights(model, tensors, source)
    trainer = make_trainer(config, model, _loss(), None, torch.sigmoid, None, resolve_device(config.trainer.device),
                           train=False, batch_transform=Normalise(pre["mean"], pre["std"], False))
    return config, pre, trainer


def evaluate(run_dir: str | Path, data: str | Path | None = None, checkpoint: str = "best",
             overwrite: bool = False) -> tuple[dict[str, float], Path]:
    """Test metrics of a trained run again (its own split, or another folder's test images)."""
    run_dir = Path(run_dir)
    config, pre, trainer = load_run(run_dir, checkpoint)
    if data is not None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"path": Path(data),
                                                                                    "dataset": None})})
    _, test_cases, _ = load_cases(config)
    name = "test" if data is None else Path(data).name
    out = run_dir / "evaluation" / f"{name}.json"
    refuse_overwrite(out, overwrite)
    t = _threshold(run_dir)
    _, metrics, _ = case_metrics(trainer, config, test_cases, t, name)
    out.parent.mkdir(exist_ok=True)
    runs.write_metrics(out.parent, metrics, out.name)
    return metrics, out


def predict(run_dir: str | Path, input_path: str | Path, out: str | Path | None = None, checkpoint: str = "best",
            overwrite: bool = False) -> Path:
    """For an image or a folder of images: ``<name>_prob.png`` (probability x 255) and
    ``<name>_mask.png`` (vessels at the run's F1-optimal threshold, inside the derived FOV) in
    ``out`` (default RUN_DIR/predictions/<input name>/)."""
    from PIL import Image

    from ..io import atomic_write

    run_dir, input_path = Path(run_dir), Path(input_path)
    config, pre, trainer = load_run(run_dir, checkpoint)
    files = image_files(input_path, IMAGE_EXT)
    out = Path(out) if out is not None else run_dir / "predictions" / input_path.stem
    refuse_overwrite(out, overwrite, folder=True)
    images = [read_image(f) for f in files]  # every file is read and checked before anything is written
    t = _threshold(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f, img in zip(files, images, strict=True):
        prob = predict_map(trainer, prepare_fundus(img, pre["channels"], pre["clahe"]), config.data.tile,
                           config.data.overlap)
        fov = derive_fov(img)
        prob_png = Image.fromarray(np.round(prob * 255).astype(np.uint8))
        mask_png = Image.fromarray(((prob >= t) & fov).astype(np.uint8) * 255)
        atomic_write(out / f"{f.stem}_prob.png", lambda p, im=prob_png: im.save(p, format="PNG"))
        atomic_write(out / f"{f.stem}_mask.png", lambda p, im=mask_png: im.save(p, format="PNG"))
    atomic_write_json(out / "threshold.json", {"threshold": t, "source": "F1-optimal on the training images"})
    return out
