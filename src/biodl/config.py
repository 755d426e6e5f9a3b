"""Run configuration: pydantic models, YAML files and ``--set key=value`` overrides.

A config is a YAML mapping whose keys mirror its task's model (:class:`TabularRunConfig`,
:class:`ImageRunConfig`, :class:`SegmentationRunConfig`; ``task:`` picks it). Unknown keys are
errors that list the valid keys and suggest the closest one, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, describe_os_error, path_problem
from .metrics import canonical

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainerConfig",
    "TabularRunConfig",
    "RunConfig",
    "ImageDataConfig",
    "ImageModelConfig",
    "ImageRunConfig",
    "SegmentationRunConfig",
    "TaskSpec",
    "TASKS",
    "task_spec",
    "load_config",
    "build_config",
    "config_hash",
    "dump_config",
    "safe_yaml",
    "validation_problem",
]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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
    """Split-conformal prediction sets calibrated on the validation split (see biodl.conformal)."""

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
    slide_mpp: float | None = Field(None, gt=0, description="micrometres per level-0 pixel of slides whose files "
                                                            "do not record it")


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
    mpp: float | None = Field(None, gt=0, description="micrometres per pixel of the images as the model sees "
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


# ----------------------------------------------------------------------------- the task registry


#: the config of any run, whichever its task (for annotations; a run's own class comes from ``task``)
RunConfig = Union[TabularRunConfig, ImageRunConfig, SegmentationRunConfig]


@dataclass(frozen=True)
class TaskSpec:
    """A task (``task:`` in a config): its config class, the module whose ``train``, ``evaluate``
    and ``predict`` run it, and the ``module:function`` that explains its runs (None: no explain).
    The CLI, :func:`load_config`, ``biodl explain`` and the studies all ask :data:`TASKS`."""

    name: str
    config: type[BaseModel]
    module: str
    explain: str | None = None

    @property
    def commands(self) -> tuple[str, ...]:
        return ("train", "evaluate", "predict", *(("explain",) if self.explain else ()))

    def command(self, name: str, where: str | Path | None = None) -> Callable[..., Any]:
        """The function behind ``biodl <name>`` for this task; a command the task does not
        have is a one-line error naming ``where`` (e.g. the run directory)."""
        from importlib import import_module

        if name not in self.commands:
            able = [t.name for t in TASKS.values() if name in t.commands]
            raise ConfigError(where or "task", f"biodl {name} does not support {self.name} runs (it supports: "
                                               f"{', '.join(able)})")
        module, _, function = (self.explain if name == "explain" else f"{self.module}:{name}").partition(":")
        return getattr(import_module(module), function)


#: task name -> its spec (filled at the end of this module)
TASKS: dict[str, TaskSpec] = {}


def task_spec(name: Any, where: str | Path = "task") -> TaskSpec:
    """The registered task ``name``; an unknown name is a ConfigError suggesting the closest."""
    if name not in TASKS:
        close = difflib.get_close_matches(str(name), list(TASKS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(where, f"task: unknown task {name!r}; {hint}known: {', '.join(TASKS)}")
    return TASKS[name]


# ----------------------------------------------------------------------------- validation


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _check_keys(raw: Any, model: type[BaseModel], where: str, prefix: str = "") -> None:
    """Raise ConfigError for the first key of ``raw`` that ``model`` does not have."""
    if not isinstance(raw, dict):
        return
    fields = model.model_fields
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in fields:
            valid = sorted(fields)
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
            raise ConfigError(where, f"unknown key '{path}'; {hint}valid keys here: {', '.join(valid)}")
        sub = _nested_model(fields[key].annotation)
        if sub is not None:
            _check_keys(value, sub, where, prefix=f"{path}.")


def validation_problem(exc: ValidationError) -> str:
    """The first fault of a pydantic error as ``key.path: message (got value)``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if "input" in err and err["type"] != "missing" and not isinstance(err["input"], (dict, list)):
        got = repr(err["input"])
        msg += f" (got {got[:60] + '...' if len(got) > 60 else got})"
    elif isinstance(err.get("input"), list) and err["type"] != "missing":
        msg += " (got a list)"
    return f"{loc}: {msg}" if loc else msg


def _validate(raw: dict[str, Any], where: str, model: type[M]) -> M:
    _check_keys(raw, model, where)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(where, validation_problem(exc)) from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item}", "expected KEY=VALUE, e.g. trainer.epochs=5")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item}", "empty key")
    try:
        value = safe_yaml(text, f"--set {item}") if text.strip() else None
    except ConfigError as exc:
        if not isinstance(exc.__cause__, yaml.YAMLError):
            raise
        value = text  # not YAML: the text itself
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str], model: type[BaseModel]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested dict (values parsed as YAML)."""
    for item in overrides:
        parts, value = _parse_override(item)
        _check_keys(_nest(parts, value), model, f"--set {item}")
        node = raw
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return raw


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return out


#: most YAML nodes a config may expand to through aliases (``*a``) before it is refused
MAX_YAML_NODES = 100_000


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (counted, not expanded)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a node that refers to itself counts once (yaml refuses such loops anyway)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = total = min(total, MAX_YAML_NODES + 1)
    return total


def safe_yaml(text: str, where: str | Path) -> Any:
    """Parse YAML safely (plain data only) and boundedly: a document whose aliases would expand to
    more than :data:`MAX_YAML_NODES` nodes (an "alias bomb") or that nests too deeply is refused
    before anything is built. Every fault is one ConfigError naming ``where``."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(where, f"invalid YAML{at}: {problem}") from exc
        except RecursionError:
            raise ConfigError(where, "invalid YAML: nested too deeply") from None
        if node is None:
            return None
        try:
            if _expanded_size(node, {}) > MAX_YAML_NODES:
                raise ConfigError(where, f"YAML aliases expand to more than {MAX_YAML_NODES:,} values (an alias "
                                         "bomb?); write the values out or use fewer aliases")
            return loader.construct_document(node)
        except RecursionError:
            raise ConfigError(where, "invalid YAML: nested too deeply") from None
        except yaml.YAMLError as exc:
            raise ConfigError(where, f"invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every fault into a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, path_problem(path) or "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, "is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "not a UTF-8 text file (binary file?)") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {describe_os_error(exc)}") from None
    raw = safe_yaml(text, path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw


def _task_model(raw: dict[str, Any], overrides: list[str], where: str) -> type[BaseModel]:
    task = raw.get("task", "tabular")
    for item in overrides:
        if item.partition("=")[0].strip() == "task":
            task = _parse_override(item)[1]
    return task_spec(task, where).config


def build_config(raw: dict[str, Any], overrides: list[str] | None = None, where: str = "config",
                 model: type[M] | None = None) -> M:
    """Validate a raw mapping (plus overrides) into ``model`` (default: the config class of the
    mapping's ``task``, a :class:`TabularRunConfig` for tabular runs)."""
    raw = json.loads(json.dumps(raw, default=str))  # deep copy, plain types
    model = model or _task_model(raw, list(overrides or []), where)
    _check_keys(raw, model, where)
    apply_overrides(raw, list(overrides or []), model)
    return _validate(raw, where, model)


for _spec in (TaskSpec("tabular", TabularRunConfig, "biodl.tasks.tabular", "biodl.interpret.explain:explain_tabular"),
              TaskSpec("image", ImageRunConfig, "biodl.tasks.image", "biodl.interpret.explain:explain_images"),
              TaskSpec("segmentation", SegmentationRunConfig, "biodl.tasks.segmentation")):
    TASKS[_spec.name] = _spec


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config file and apply ``--set`` style overrides."""
    return build_config(read_yaml(path), overrides, where=str(path))


def config_dict(config: BaseModel) -> dict[str, Any]:
    return config.model_dump(mode="json")


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML text (every default written out)."""
    return yaml.safe_dump(config_dict(config), sort_keys=False)


def config_hash(config: BaseModel) -> str:
    """sha256 of the resolved config, canonical JSON; checkpoints record it."""
    blob = json.dumps(config_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
