"""Config sections of image runs: classification (``task: image``, slides and tiles included)
and vessel segmentation (``task: segmentation``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .schemas import (ClassificationRun, ModelConfig, Mpp, OptimizerConfig, SchedulerConfig, Strict, TrainerConfig,
                      fold_in_range, one_source)

__all__ = ["TilesConfig", "ImageDataConfig", "ImageModelConfig", "ImageRunConfig", "SegmentationDataConfig",
           "SegmentationTrainerConfig", "SegmentationRunConfig"]


class TilesConfig(Strict):
    """How a slide table's slides are cut into tiles (``data.layout: slides``; the tiles' side is
    ``data.size``, default 224, and their resolution ``data.mpp``)."""

    min_tissue: float = Field(0.5, ge=0, le=1, description="keep tiles with at least this share of tissue")
    overlap: int = Field(0, ge=0, description="grid: pixels that neighbouring tiles share")
    select: Literal["grid", "random", "hematoxylin"] = Field(
        "grid", description="grid: every tissue tile (or the n with most tissue); random: n tiles at random places "
                            "on the tissue; hematoxylin: the top n grid tiles by haematoxylin (nuclei) density")
    n: int | None = Field(None, ge=1, description="tiles per slide (needed by random and hematoxylin)")
    pen: bool = Field(False, description="leave pen-marked areas (blue, green, black ink) out of the tissue")
    slide_mpp: Mpp | None = Field(None, description="micrometres per level-0 pixel of slides whose files do not "
                                                    "record it (a fallback: a slide's own resolution wins)")
    override_mpp: bool = Field(False, description="use slide_mpp for every slide, even where the file records "
                                                  "its own resolution")


class ImageDataConfig(Strict):
    """Images in any supported layout, decoded once into the cache, and how they are split."""

    dataset: str | None = Field(None, description="an embedded data set, e.g. retinamnist")
    path: Path | None = Field(None, description=".npz, a folder with X.npy/Y.npy, a class-folder tree, a "
                                                "patient tree, or a CSV (with `images`)")
    images: Path | None = Field(None, description="image folder for a CSV layout")
    layout: Literal["auto", "npz", "npy", "folder", "patients", "csv", "slides"] = Field(
        "auto", description="auto: from the path; slides: a CSV of whole-slide images (columns slide, label, "
                            "optional patient) tiled into the cache (data.tiles, data.mpp, data.size)")
    tiles: TilesConfig = Field(default_factory=TilesConfig)
    classes: list[str] | None = Field(None, description="class names in label order (default: from the data)")
    graded: bool = Field(False, description="labels are ordered grades (adds quadratic weighted kappa)")
    size: int | None = Field(None, ge=8, description="resize to size x size when decoding")
    fit: Literal["resize", "pad"] = Field(
        "resize", description="resize: every image to size x size; pad: patches cut from a slide keep their pixels, "
                              "smaller edge crops are padded with white (right, bottom) to the set's patch size, a "
                              "larger image is an error; then the patches are resized to size if given")
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int | None = None
    group_by_patient: bool = Field(True, description="keep each patient in one split when ids exist")
    split: Literal["auto", "kfold"] = Field(
        "auto", description="auto: the official split, else one train/val/test split (by patient when ids exist); "
                            "kfold: data.folds-fold cross-validation, grouped by patient when ids exist: each fold "
                            "a run in RUN_DIR/folds/, out-of-fold predictions pooled")
    folds: int = Field(5, ge=2, le=50, description="kfold: number of folds")
    coordinates: str | None = Field(
        r"_x(?P<x>\d+)_y(?P<y>\d+)", description="regular expression with groups x and y that finds a patch's "
        "top-left position in its slide in the file name (default: Kaggle IDC names); two-class runs with patient "
        "ids get a slide map per test patient; null: none")
    fold: int | None = Field(None, ge=0, description="kfold: the one fold this run trains (set by the parent run)")
    batch_size: int = Field(64, ge=1, description="per process (under DDP the global batch is this x the processes)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes; 0 (best for a set in the disk cache "
                                                  "or in memory: it is read ahead by threads into reused, pinned "
                                                  "buffers instead)")
    skip_bad: bool = Field(False, description="leave unreadable images out (counted) instead of failing")
    cache_dir: Path | None = Field(None, description="decoded-image cache (default ~/.cache/biodl)")
    augment: bool = Field(True, description="flips, 90-degree rotations, a small rotation, a random resized crop, "
                                            "brightness/contrast jitter (training batches, on the device)")
    mpp: Mpp | None = Field(None, description="micrometres per pixel of the images as the model sees "
                                                      "them (after data.size); biodl wsi infer tiles slides at it")
    stain_jitter: float = Field(0.0, ge=0, le=0.5, description="with augment, for H&E RGB images: scale and shift "
                                "each image's haematoxylin, eosin and DAB concentrations by up to this fraction "
                                "(Tellez et al. 2018; 0.05 is their light setting); 0: off")
    stain: Literal["none", "macenko", "reinhard"] = Field(
        "none", description="H&E stain normalisation of every image before training (and of every image the run "
                            "predicts on: it is recorded in preprocess.json)")
    stain_reference: str = Field("builtin", description="the stain reference: 'builtin' (a tile of the embedded "
                                                        "CMU-1 slide), a reference tile image, or a reference JSON")
    balance: Literal["loss", "sampler", "none"] = Field(
        "loss", description="class imbalance: loss = weight the loss by inverse class frequency; sampler = draw "
                            "training images with replacement, every class equally often; none")
    device_cache: Literal["auto", "on", "off"] = Field(
        "auto", description="hold the decoded set (uint8) on the training device, a batch then being one gather "
                            "there: auto = on a GPU when it fits in device_cache_share of the free memory, else read "
                            "ahead from the disk cache; on = always (on the CPU: in process memory), an error when it "
                            "does not fit; off = never")
    device_cache_share: float = Field(0.5, gt=0, le=1, description="the share of the device's free memory the set "
                                                                   "may take (the rest is the model's)")

    @field_validator("device_cache", mode="before")
    @classmethod
    def _yaml_on_off(cls, v: Any) -> Any:
        """YAML reads a bare on / off as true / false: take them as meant."""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _one_source(self) -> "ImageDataConfig":
        one_source(self, "your files")
        fold_in_range(self)
        return self


class ImageModelConfig(ModelConfig):
    """An image model: a registry model (``args``, ``mc_dropout`` as for any model), pretrained
    weights and test-time augmentation."""

    name: str = "resnet_small"
    pretrained: Path | None = Field(None, description="weights file for the backbone, or 'imagenet': torchvision's "
                                                      "ImageNet weights from the torch hub cache ($TORCH_HOME)")
    download: bool = Field(False, description="with pretrained: imagenet, download the weights file into the torch "
                                              "hub cache when it is missing (off: biodl never uses the network)")
    freeze_epochs: int = Field(0, ge=0, description="epochs with the pretrained backbone frozen")
    backbone_lr_factor: float = Field(0.1, gt=0, description="backbone learning rate = lr x this")
    tta: bool = Field(False, description="validate, test and predict on the mean over the 8 flips and 90-degree "
                                         "rotations of each image (for rotation-invariant images)")


class ImageRunConfig(ClassificationRun):
    """An image classification run (``task: image``)."""

    name: str = "images"
    task: Literal["image"] = "image"
    data: ImageDataConfig
    model: ImageModelConfig = Field(default_factory=ImageModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)



class SegmentationDataConfig(Strict):
    """Fundus images with vessel masks (CHASE_DB1, DRIVE or images/ + masks/ [+ fov/]) and how
    patches are drawn from them."""

    dataset: str | None = Field(None, description="an embedded data set: chase_db1")
    path: Path | None = Field(None, description="your folder (CHASE_DB1, DRIVE or images/ + masks/ layout)")
    layout: Literal["auto", "chase", "drive", "folder"] = "auto"
    test_images: int = Field(8, ge=1, description="chase and folder layouts: the last N images (by name) are the "
                                                  "test set (CHASE_DB1 protocol: 20 train, 8 test)")
    channels: Literal["green", "rgb"] = Field("green", description="input: the green channel or RGB")
    clahe: bool = Field(True, description="contrast-limited adaptive histogram equalisation per image")
    patch: int = Field(64, ge=16, description="training patch side (a multiple of 2**depth)")
    patches: int = Field(20000, ge=100, description="training patches drawn (inside the FOV) per epoch")
    vessel_fraction: float = Field(0.0, ge=0, le=1, description="share of training patches centred on a vessel "
                                                                 "pixel (the rest anywhere in the FOV)")
    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(0, ge=0)
    augment: bool = Field(True, description="flips, 90-degree rotations, brightness/contrast jitter")
    tile: int = Field(512, ge=32, description="whole-image inference: tile side")
    overlap: int = Field(32, ge=0, description="whole-image inference: overlap between tiles (blended)")

    @model_validator(mode="after")
    def _one_source(self) -> "SegmentationDataConfig":
        one_source(self, "your files")
        if self.overlap >= self.tile // 2:
            raise ValueError(f"overlap {self.overlap} must be below half the tile ({self.tile})")
        return self


class SegmentationModelConfig(ImageModelConfig):
    """A segmentation network (a U-Net by default) and test-time augmentation."""

    name: str = "unet"
    tta: bool = Field(False, description="predict each tile as the mean vessel probability over its 4 flips (none, "
                                         "left-right, up-down, both), flipped back; 4x the inference time")


class SegmentationTrainerConfig(TrainerConfig):
    monitor: str = Field("train/loss", description="metric that picks the best checkpoint (no validation set: "
                                                   "images are for training or testing)")


class SegmentationRunConfig(Strict):
    """A binary segmentation run (``task: segmentation``), e.g. retinal vessels with a U-Net."""

    name: str = "segmentation"
    task: Literal["segmentation"] = "segmentation"
    seed: int = Field(0, ge=0, lt=2**32)
    deterministic: bool = False
    n_boot: int = Field(1000, ge=100, description="bootstrap resamples for the CIs of the test means (patients "
                                                  "resampled: CHASE_DB1's two eyes of a child together)")
    data: SegmentationDataConfig
    model: SegmentationModelConfig = Field(default_factory=SegmentationModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: SegmentationTrainerConfig = Field(default_factory=SegmentationTrainerConfig)

    @model_validator(mode="after")
    def _no_mc_dropout(self) -> "SegmentationRunConfig":
        if self.model.mc_dropout:
            raise ValueError("model.mc_dropout is for classification runs")
        return self
