"""Run configuration: pydantic models (``schemas``: shared sections and tabular runs;
``images``; ``omics``: sequences and single cells; ``mil``: bags of tile features; ``registry``:
task -> class), YAML files and ``--set key=value`` overrides (``loading``).

A config is a YAML mapping whose keys mirror its task's model (:class:`TabularRunConfig`,
:class:`ImageRunConfig`, :class:`SegmentationRunConfig`; ``task:`` picks it). Unknown keys are
errors that list the valid keys and suggest the closest one, so a typo never silently falls
back to a default.
"""

from .images import (ImageDataConfig, ImageModelConfig, ImageRunConfig, SegmentationDataConfig,
                     SegmentationModelConfig, SegmentationRunConfig, SegmentationTrainerConfig, TilesConfig)
from .loading import (MAX_YAML_NODES, apply_overrides, build_config, config_dict, config_hash, dump_config,
                      load_config, read_yaml, safe_yaml, validation_problem)
from .mil import MilDataConfig, MilRunConfig
from .omics import (CellPreprocessConfig, CellsDataConfig, CellsRunConfig, SequenceDataConfig, SequenceModelConfig,
                    SequenceRunConfig)
from .registry import RUN_CONFIGS, RunConfig, config_class
from .schemas import (MPP_RANGE, ConformalConfig, DataConfig, ModelConfig, Mpp, OptimizerConfig, Positive,
                      SchedulerConfig, Strict, TabularRunConfig, TrainerConfig)

__all__ = [
    "Strict", "Positive", "MPP_RANGE", "Mpp", "DataConfig", "ModelConfig", "OptimizerConfig", "SchedulerConfig",
    "TrainerConfig", "ConformalConfig",
    "TabularRunConfig", "TilesConfig", "ImageDataConfig", "ImageModelConfig", "ImageRunConfig",
    "SegmentationDataConfig", "SegmentationModelConfig", "SegmentationTrainerConfig", "SegmentationRunConfig",
    "SequenceDataConfig", "SequenceModelConfig", "SequenceRunConfig", "CellPreprocessConfig", "CellsDataConfig",
    "CellsRunConfig", "MilDataConfig", "MilRunConfig", "RunConfig", "RUN_CONFIGS",
    "config_class", "validation_problem", "apply_overrides", "MAX_YAML_NODES", "safe_yaml", "read_yaml",
    "build_config", "load_config", "config_dict", "dump_config", "config_hash",
]
