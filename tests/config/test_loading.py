from pathlib import Path

import pytest
import yaml

from biodl.config import build_config, config_hash, dump_config, load_config
from biodl.errors import ConfigError
from biodl.studies import heart_failure_mlp
from tests.conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/heart_failure_mlp.yaml"


def test_example_matches_the_study_config():
    # the README's `biodl train --config examples/...` and `biodl run heart-failure-mlp` are the same run
    assert load_config(EXAMPLE) == heart_failure_mlp.config()


def test_overrides_are_parsed_as_yaml_values():
    cfg = load_config(EXAMPLE, ["trainer.epochs=5", "model.args.hidden=[8, 4]", "trainer.grad_clip=null",
                                "optimizer.lr=1e-4"])
    assert cfg.trainer.epochs == 5
    assert cfg.model.args["hidden"] == [8, 4]
    assert cfg.trainer.grad_clip is None
    assert cfg.optimizer.lr == pytest.approx(1e-4)


def test_unknown_key_suggests_the_closest_and_lists_valid(tmp_path):
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["trainer"]["epocs"] = 3
    bad = tmp_path / "run.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert "unknown key 'trainer.epocs'" in msg
    assert "did you mean 'trainer.epochs'" in msg
    assert "grad_clip" in msg  # valid keys listed


def test_unknown_override_key_names_the_override():
    with pytest.raises(ConfigError) as err:
        load_config(EXAMPLE, ["optimiser.lr=0.1"])
    assert "--set optimiser.lr=0.1" in str(err.value)
    assert "did you mean 'optimizer'" in str(err.value)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["trainer.epochs=many"], "trainer.epochs: Input should be a valid integer"),
        (["trainer.epochs=0"], "greater than or equal to 1"),
        (["optimizer.name=rmsprop"], "optimizer.name"),
        (["data.test_fraction=0.45", "data.val_fraction=0.5"], "at least 10% for training"),
        (["trainer.epochs"], "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(EXAMPLE, overrides)
    assert fragment in str(err.value)


def test_yaml_syntax_error_gives_the_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\ntrainer:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "invalid YAML" in str(err.value) and "line" in str(err.value)


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(lst)


def test_data_source_must_be_exactly_one():
    with pytest.raises(ConfigError, match="exactly one of data.dataset"):
        build_config({"data": {"dataset": "heart-failure", "path": "x.csv"}})
    with pytest.raises(ConfigError, match="exactly one of data.dataset"):
        build_config({"data": {}})


def test_mc_dropout_is_for_classification_runs_only():
    raw = {"task": "segmentation", "data": {"dataset": "chase_db1"}}
    assert build_config(raw).model.mc_dropout == 0
    with pytest.raises(ConfigError, match="mc_dropout is for classification runs"):
        build_config(raw, ["model.mc_dropout=5"])
    with pytest.raises(ConfigError, match="model.mc_dropout"):
        load_config(EXAMPLE, ["model.mc_dropout=-1"])


def test_resolved_config_round_trips_and_hash_tracks_content(tmp_path):
    cfg = load_config(EXAMPLE)
    p = tmp_path / "config.yaml"
    p.write_text(dump_config(cfg))
    again = load_config(p)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(EXAMPLE, ["seed=1"])) != config_hash(cfg)


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A few hundred bytes that expand to width**levels values (the "billion laughs")."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb())
    assert bomb.stat().st_size < 600
    with pytest.raises(ConfigError) as err:
        load_config(bomb)
    assert str(bomb) in str(err.value) and "aliases expand to more than 100,000 values" in str(err.value)
    with pytest.raises(ConfigError, match="alias bomb"):  # the same through an override
        load_config(EXAMPLE, ["model.args={" + _alias_bomb().replace("\n", ", ").rstrip(", ") + "}"])


def test_a_few_aliases_are_still_fine(tmp_path):
    p = tmp_path / "ok.yaml"
    text = EXAMPLE.read_text()
    p.write_text(text[: text.index("optimizer:")] + "optimizer: {name: adamw, lr: &rate 0.002, weight_decay: *rate}\n"
                 + text[text.index("scheduler:"):])
    cfg = load_config(p)
    assert cfg.optimizer.lr == pytest.approx(0.002) and cfg.optimizer.weight_decay == pytest.approx(0.002)


def test_deeply_nested_yaml_and_a_config_link_loop_are_one_line_errors(tmp_path, cli):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(tmp_path / "loop2.yaml")
    (tmp_path / "loop2.yaml").symlink_to(loop)
    r = cli("train", "--config", loop, "--out", tmp_path / "run")
    assert_one_line_error(r, "loop.yaml", "cannot read: a symbolic-link loop")
    assert not (tmp_path / "run").exists()
