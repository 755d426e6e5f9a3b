"""The run configs' shared sections as pydantic models: strict sections (unknown keys are
errors), the model, optimiser, scheduler, trainer and conformal sections every task uses, the
classification run's common keys, and the tabular run. Each modality's sections are in its own
module (``images``, ``omics``); ``registry`` maps ``task:`` to its config class."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..evaluation.vocabulary import canonical

__all__ = [
    "Strict", "Positive", "MPP_RANGE", "Mpp", "DataConfig", "ModelConfig", "OptimizerConfig", "SchedulerConfig",
    "TrainerConfig", "ConformalConfig", "ClassificationRun", "TabularRunConfig", "one_source", "fold_in_range",
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


def one_source(data: Any, yours: str = "your file") -> None:
    """A data section names exactly one of ``dataset`` (embedded) and ``path`` (``yours``)."""
    if (data.dataset is None) == (data.path is None):
        raise ValueError(f"give exactly one of data.dataset (embedded) or data.path ({yours})")


def fold_in_range(data: Any) -> None:
    """``data.fold`` (set by a k-fold parent) needs ``data.split: kfold`` and a fold below ``data.folds``."""
    if data.fold is not None and (data.split != "kfold" or data.fold >= data.folds):
        raise ValueError(f"data.fold {data.fold} needs data.split: kfold and a fold below data.folds ({data.folds})")


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
        one_source(self)
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


class ClassificationRun(Strict):
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
    trial: bool = Field(False, description="a tuning trial (biodl tune sets it): trained and scored on validation "
                                           "only; the test split is never read")


class TabularRunConfig(ClassificationRun):
    """Everything one tabular run needs. Resolved, it is saved as ``config.yaml`` in the run
    directory."""

    name: str = "run"
    task: Literal["tabular"] = "tabular"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
