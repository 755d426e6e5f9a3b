"""The run configs as pydantic models: one class per task (``task:`` picks it), built from
strict sections (unknown keys are errors). Resolved, a config is saved as ``config.yaml`` in the
run directory."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import ConfigError
from ..evaluation.vocabulary import canonical

__all__ = [
    "Strict", "Positive", "MPP_RANGE", "Mpp", "DataConfig", "ModelConfig", "OptimizerConfig", "SchedulerConfig",
    "TrainerConfig", "ConformalConfig",
    "TabularRunConfig", "TilesConfig", "ImageDataConfig", "ImageModelConfig", "ImageRunConfig",
    "SegmentationDataConfig", "SegmentationTrainerConfig", "SegmentationRunConfig", "SequenceDataConfig",
    "SequenceModelConfig", "SequenceRunConfig", "RunConfig", "RUN_CONFIGS",
    "config_class",
]


class Strict(BaseModel):
    """Base of every config section and run file: unknown keys are errors, and so is a float
    that is NaN or infinite (no setting or statistic biodl writes is either)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


#: a positive, finite float (a standard deviation, a resolution)
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: micrometres per pixel any slide, tile or patch may have: 10 nm (beyond any light microscope) to
#: 1 mm (a thumbnail of a whole slide); outside it, a value is a typo or a damaged header
MPP_RANGE = (0.01, 1000.0)
#: a resolution in micrometres per pixel, within MPP_RANGE
Mpp = Annotated[float, Field(ge=MPP_RANGE[0], le=MPP_RANGE[1])]


class DataConfig(Strict):
    """Where the data is and how it is split. Tabular CSV for now."""

    dataset: str | None = Field(None, description="name of an embedded data set (see `biodl studies`)")
    path: Path | None = Field(None, description="a CSV file of your own (instead of `dataset`)")
    target: str = "DEATH_EVENT"
    features: list[str] | None = Field(None, description="feature columns; default: all but target and drop")
    drop: list[str] = Field(default_factory=list, description="columns never used as features")
    binary: list[str] = Field(default_factory=list, description="columns that must be 0 or 1")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int | None = Field(None, description="seed of the split; default: the run seed")
    standardize: bool = True
    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of data.dataset (embedded) or data.path (your file)")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("data.val_fraction + data.test_fraction must leave at least 10% for training")
        return self


class ModelConfig(Strict):
    """A model from the registry (``biodl.models.list_models()``) and its constructor arguments."""

    name: str = "mlp"
    args: dict[str, Any] = Field(default_factory=dict)
    mc_dropout: int = Field(0, ge=0, le=1000, description="Monte Carlo dropout: test and predict on the mean over "
                                                          "this many passes with dropout on (models with dropout), "
                                                          "with each case's mutual information; 0 = off")


class OptimizerConfig(Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, description="SGD only")


class SchedulerConfig(Strict):
    name: Literal["none", "step", "cosine", "plateau"] = "none"
    step_size: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0, description="step/plateau: decay factor")
    patience: int = Field(5, ge=0, description="plateau: epochs without improvement")


class TrainerConfig(Strict):
    epochs: int = Field(100, ge=1)
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "32", "bf16"] = Field("auto", description="auto = bf16 autocast on CUDA")
    compile: bool = False
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm")
    monitor: str = Field("val/loss", description="metric that picks the best checkpoint")
    mode: Literal["min", "max"] = "min"
    early_stopping_patience: int | None = Field(None, ge=1, description="epochs without improvement; null = off")
    checkpoint_every_steps: int = Field(0, ge=0, description="also save last.* every N steps (0: epoch ends)")
    class_weights: bool = Field(True, description="weight the loss by inverse class frequency")
    progress: bool = True

    @field_validator("monitor")
    @classmethod
    def _in_the_vocabulary(cls, v: str) -> str:
        return canonical(v)  # val/tpr is val/sensitivity, val/auc val/roc_auc: the names the engine logs


class ConformalConfig(Strict):
    """Split-conformal prediction sets calibrated on the validation split (see biodl.trust.conformal)."""

    method: Literal["lac", "aps", "mondrian", "ordinal", "none"] = Field(
        "lac", description="lac: smallest sets; aps: adaptive; mondrian: coverage for every class; ordinal: "
                           "contiguous grades (graded labels); none: off")
    alpha: float = Field(0.1, gt=0, lt=1, description="error rate: a set misses the true class for about this "
                                                       "share of cases")
    on: Literal["raw", "recalibrated"] = Field(
        "raw", description="the probabilities the sets come from: the model's own (the guarantee does not depend "
                           "on the recalibration, which saw the same validation cases) or the recalibrated ones")
    compare: bool = Field(True, description="also report the other methods' coverage and set size on the test split")


class _ClassificationRun(Strict):
    """What every classification run has beside its data and model: seeds, CIs, recalibration,
    prediction sets and deep ensembles."""

    name: str = "run"
    task: str
    seed: int = Field(0, ge=0, lt=2**32)
    deterministic: bool = False
    n_boot: int = Field(1000, ge=100, description="bootstrap resamples for test-set CIs")
    calibration: Literal["temperature", "vector", "platt", "isotonic", "none"] = Field(
        "temperature", description="recalibration fitted on the validation split after training "
                                   "(calibration.json; platt and isotonic: two classes only), applied by predict, "
                                   "evaluate and the report; none: off")
    conformal: ConformalConfig = Field(default_factory=ConformalConfig)
    ensemble: int = Field(1, ge=1, le=50, description="members of a deep ensemble (seeds seed, seed + 1, ...; each a "
                                                      "run in RUN_DIR/members/); 1: one model")


class TabularRunConfig(_ClassificationRun):
    """Everything one tabular run needs. Resolved, it is saved as ``config.yaml`` in the run
    directory."""

    name: str = "run"
    task: Literal["tabular"] = "tabular"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)


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
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of data.dataset (embedded) or data.path (your files)")
        if self.fold is not None and (self.split != "kfold" or self.fold >= self.folds):
            raise ValueError(f"data.fold {self.fold} needs data.split: kfold and a fold below data.folds "
                             f"({self.folds})")
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


class ImageRunConfig(_ClassificationRun):
    """An image classification run (``task: image``)."""

    name: str = "images"
    task: Literal["image"] = "image"
    data: ImageDataConfig
    model: ImageModelConfig = Field(default_factory=ImageModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)


class SequenceDataConfig(Strict):
    """DNA sequences with labels (``task: sequence``): the training file, where the negatives
    come from when it holds positives only, the test set, and the length the model sees."""

    dataset: str | None = Field(None, description="an embedded experiment: tf-binding:<FACTOR> (ELK1, GABPA, REST, "
                                                   "MYC, CTCFL): trains on its A+C peaks, tests on its B set")
    path: Path | None = Field(None, description="training sequences: a DeepBind .seq[.gz] table, a CSV of "
                                                "sequence,label[,group][,id], a FASTA (labels: data.labels, or all "
                                                "positives), or a folder of one FASTA per class")
    labels: Path | None = Field(None, description="a CSV id,label for a FASTA file")
    test: Path | None = Field(None, description="a test set in the same forms (default: data.test_fraction of the "
                                                "training sequences, grouped)")
    negatives: str = Field("shuffle", description="when the training (or test) sequences are positives only: "
                                                  "shuffle (dinucleotide shuffles of each) or a FASTA of background "
                                                  "sequences")
    shuffles: int = Field(1, ge=1, le=10, description="dinucleotide shuffles made of each positive")
    length: int | None = Field(None, ge=8, le=100_000, description="the length the model sees (default: the "
                                                                    "longest training sequence)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="validation carved from training, grouped (a peak "
                                                             "and its shuffles together)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="without data.test: the test share, grouped")
    reverse_complement: bool = Field(True, description="train on a random strand of each sequence")
    batch_size: int = Field(128, ge=1)
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> "SequenceDataConfig":
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of data.dataset (embedded) or data.path (your file)")
        return self


class SequenceModelConfig(ModelConfig):
    """A sequence model from the registry (``deepbind``, ``basset``)."""

    name: str = "deepbind"
    strands: bool = Field(True, description="validate, test and predict on the mean of both strands (the sequence "
                                            "and its reverse complement)")


class SequenceRunConfig(_ClassificationRun):
    """A DNA sequence classification run (``task: sequence``), e.g. transcription-factor binding."""

    name: str = "sequences"
    task: Literal["sequence"] = "sequence"
    data: SequenceDataConfig
    model: SequenceModelConfig = Field(default_factory=SequenceModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adamw", lr=3e-3,
                                                                               weight_decay=1e-3))
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(epochs=40, monitor="val/roc_auc",
                                                                         mode="max"))


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
    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(0, ge=0)
    augment: bool = Field(True, description="flips, 90-degree rotations, brightness/contrast jitter")
    tile: int = Field(512, ge=32, description="whole-image inference: tile side")
    overlap: int = Field(32, ge=0, description="whole-image inference: overlap between tiles (blended)")

    @model_validator(mode="after")
    def _one_source(self) -> "SegmentationDataConfig":
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of data.dataset (embedded) or data.path (your files)")
        if self.overlap >= self.tile // 2:
            raise ValueError(f"overlap {self.overlap} must be below half the tile ({self.tile})")
        return self


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
    model: ImageModelConfig = Field(default_factory=lambda: ImageModelConfig(name="unet"))
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: SegmentationTrainerConfig = Field(default_factory=SegmentationTrainerConfig)

    @model_validator(mode="after")
    def _no_mc_dropout(self) -> "SegmentationRunConfig":
        if self.model.mc_dropout:
            raise ValueError("model.mc_dropout is for classification runs")
        return self


#: the config of any run, whichever its task (for annotations; a run's own class comes from ``task``)
RunConfig = Union[TabularRunConfig, ImageRunConfig, SegmentationRunConfig, SequenceRunConfig]

#: task name (``task:`` in a config) -> its config class
RUN_CONFIGS: dict[str, type[BaseModel]] = {cls.model_fields["task"].default: cls
                                           for cls in (TabularRunConfig, ImageRunConfig, SegmentationRunConfig,
                                                       SequenceRunConfig)}


def config_class(task: Any, where: str | Path = "task") -> type[BaseModel]:
    """The config class of task ``task``; an unknown name is a ConfigError suggesting the closest."""
    if task not in RUN_CONFIGS:
        close = difflib.get_close_matches(str(task), list(RUN_CONFIGS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(where, f"task: unknown task {task!r}; {hint}known: {', '.join(RUN_CONFIGS)}")
    return RUN_CONFIGS[task]
