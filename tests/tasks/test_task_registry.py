"""The task registry: one table (name -> module) beside the config classes (name -> class) that
config loading, the CLI, the studies and the predictor ask."""

import importlib

import pytest
import yaml

from biodl.config import RUN_CONFIGS, SegmentationRunConfig, build_config, config_class
from biodl.tasks.registry import TASKS, task_spec
from biodl.errors import ConfigError
from biodl.tasks import get_task, task_command
from tests.conftest import assert_one_line_error


def test_every_task_has_its_config_class_and_commands():
    assert set(TASKS) == set(RUN_CONFIGS) == {"tabular", "image", "segmentation", "sequence", "cells", "mil"}
    for name, spec in TASKS.items():
        assert spec.config is config_class(name)
        assert spec.config.model_fields["task"].default == name  # `task: NAME` builds this class
        module = importlib.import_module(spec.module)
        assert get_task(name) is module
        for command in ("train", "evaluate"):
            assert task_command(name, command) is getattr(module, command)


def test_config_loading_picks_the_class_from_the_registry():
    cfg = build_config({"task": "segmentation", "data": {"dataset": "chase_db1"}})
    assert isinstance(cfg, SegmentationRunConfig)
    with pytest.raises(ConfigError, match="unknown task 'imagee'; did you mean 'image'"):
        build_config({"task": "imagee", "data": {"dataset": "x"}})
    with pytest.raises(ConfigError, match="unknown task 'tabularr'"):
        task_spec("tabularr")
    with pytest.raises(ConfigError, match="unknown task 'tabularr'"):
        config_class("tabularr")


def test_a_command_a_task_lacks_is_one_line(tmp_path, cli):
    run = tmp_path / "seg"
    run.mkdir()
    cfg = build_config({"task": "segmentation", "data": {"dataset": "chase_db1"}})
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    r = cli("explain", run)
    assert_one_line_error(r, str(run), "biodl explain does not support segmentation runs", "tabular, image")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # nothing written
