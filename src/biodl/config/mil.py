"""Config sections of multiple-instance learning on cached tile features (``task: mil``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .schemas import ClassificationRun, ModelConfig, OptimizerConfig, SchedulerConfig, Strict, TrainerConfig, \
    fold_in_range, one_source

__all__ = ["MilDataConfig", "MilModelConfig", "MilRunConfig"]


class MilDataConfig(Strict):
    """Bags of tile features with a label per bag (``task: mil``): where the tiles and labels
    are, what makes their features, which tiles form a bag, and how bags are split (by patient)."""

    dataset: Literal["idc"] | None = Field(None, description="embedded: idc (10 patients' IDC patches, put back "
                                                             "together at their slide positions)")
    path: Path | None = Field(None, description="a patient tree <patient>/<0|1>/<tile image named ..._x<X>_y<Y>...> "
                                                "(each patient's tiles one mosaic), or a slide table CSV "
                                                "slide,label[,patient] naming slides of the feature cache")
    extractor: Path | None = Field(None, description="the image run whose penultimate layer makes the features "
                                                     "(a k-fold run: fold k's network for fold k, on its patients); "
                                                     "needed for a patient tree")
    features: Path | None = Field(None, description="the feature cache: a slide table's (made by biodl wsi "
                                                    "features), or where a patient tree's go (default: "
                                                    "$BIODL_CACHE/features or ~/.cache/biodl/features)")
    classes: list[str] | None = Field(None, description="class names in label order (default: the labels)")
    bags: Literal["window", "slide"] = Field("window", description="window: each k x k-tile window of a mosaic "
                                             "is a bag, positive when it holds a positive tile (Ilse et al.'s "
                                             "protocol); slide: each slide (or patient) is a bag")
    window: int = Field(4, ge=1, le=64, description="bags: window: the window's side in tiles")
    min_tiles: int = Field(4, ge=1, description="bags: window: windows with fewer tissue tiles are left out")
    max_tiles: int = Field(512, ge=1, description="training bags larger than this are subsampled each epoch")
    split: Literal["holdout", "kfold"] = Field("kfold", description="kfold: data.folds folds by patient, each a run "
                                                                    "in RUN_DIR/folds/ (a k-fold extractor: its "
                                                                    "folds); holdout: one split by patient")
    folds: int = Field(5, ge=2, le=50)
    fold: int | None = Field(None, ge=0, description="kfold: the one fold this run trains (set by the parent run)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="validation patients carved from the training ones")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="holdout: the test share of patients")
    batch_size: int = Field(16, ge=1, description="bags per step")
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "MilDataConfig":
        one_source(self, "a patient tree or a slide table")
        table = self.path is not None and self.path.suffix.lower() in (".csv", ".tsv", ".gz")
        if table and self.features is None:
            raise ValueError("data.features: a slide table names slides of a feature cache (biodl wsi features "
                             "--cache DIR); give that folder")
        if table and self.bags != "slide":
            raise ValueError("data.bags: a slide table labels whole slides; set data.bags: slide")
        if not table and self.extractor is None:
            raise ValueError("data.extractor: name the image run whose features the bags hold (e.g. a biodl run "
                             "histopathology folder)")
        fold_in_range(self)
        return self


class MilModelConfig(ModelConfig):
    """A MIL model from the registry over bags of tile features (``abmil``; ``args.pooling: mean``
    for the mean-pooling baseline)."""

    name: str = "abmil"


class MilRunConfig(ClassificationRun):
    """A multiple-instance run (``task: mil``): a bag's label learnt from its tiles' features."""

    name: str = "mil"
    task: Literal["mil"] = "mil"
    data: MilDataConfig
    model: MilModelConfig = Field(default_factory=MilModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adamw", lr=5e-4,
                                                                               weight_decay=1e-4))
    scheduler: SchedulerConfig = Field(default_factory=lambda: SchedulerConfig(name="cosine"))
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(epochs=40, monitor="val/loss", mode="min"))
