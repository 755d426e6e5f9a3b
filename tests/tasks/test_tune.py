"""``biodl tune``: the search space parser, a search that never reads the test split, the same
trials for the same seed, kill and resume without repeating a finished trial, the best config
trained and tested once, bad input refused in one line with nothing written."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from biodl.errors import ConfigError
from biodl.tasks.search import parse_space
from tests.conftest import ROOT, assert_one_line_error

pytest.importorskip("optuna")
EXAMPLE = ROOT / "examples" / "heart_failure_tune.yaml"


class Poisoned:
    """Test indices a trial must never use: any use raises."""

    def _read(self, *args, **kwargs):
        raise AssertionError("a trial read the test split")

    __array__ = __len__ = __iter__ = __getitem__ = _read


def _config(tmp: Path, **changes) -> Path:
    """The example with a shorter run (and ``changes`` to its search block)."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["trainer"].update(epochs=12, early_stopping_patience=6)
    raw["n_boot"] = 200
    raw["search"].update(changes)
    path = tmp / "tune.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_search_space_parser_takes_each_kind_and_refuses_each_fault():
    raw = {k: v for k, v in yaml.safe_load(EXAMPLE.read_text()).items() if k != "search"}
    space = parse_space({"optimizer.lr": {"log_uniform": [1e-4, 1e-2]}, "optimizer.weight_decay": {"uniform": [0, 0.1]},
                         "data.batch_size": {"int": [8, 64], "step": 8}, "trainer.epochs": {"log_int": [10, 100]},
                         "model.args.hidden": {"choice": [[16], [32, 16]]}}, raw, "t.yaml")
    assert [(p.key, p.kind) for p in space] == [("optimizer.lr", "log_uniform"), ("optimizer.weight_decay", "uniform"),
                                                ("data.batch_size", "int"), ("trainer.epochs", "log_int"),
                                                ("model.args.hidden", "choice")]
    assert space[2].step == 8 and space[4].choices == ([16], [32, 16])
    bad = {"optimizer.lrr": ({"uniform": [0.1, 0.2]}, "unknown key 'optimizer.lrr'; did you mean 'optimizer.lr'"),
           "model.args.widht": ({"choice": [1, 2]}, "'mlp' takes no argument 'widht'"),
           "optimizer.lr": ({"uniform": [0.2, 0.1]}, "needs low < high, got [0.2, 0.1]"),
           "optimizer.weight_decay": ({"log_uniform": [0, 0.1]}, "a log range must stay above 0"),
           "trainer.epochs": ({"int": [1.5, 3]}, "whole numbers"),
           "data.batch_size": ({"gauss": [1, 2]}, "unknown kind 'gauss'"),
           "model.args.dropout": ({"uniform": [0.1]}, "uniform takes [low, high]"),
           "model.args.hidden": ({"choice": []}, "non-empty list"),
           "data.val_fraction": ({"uniform": [0.5, 1.5]}, "data.val_fraction")}
    for key, (spec, message) in bad.items():
        with pytest.raises(ConfigError) as err:
            parse_space({key: spec}, raw, "t.yaml")
        text = str(err.value)
        assert message in text and text.startswith("t.yaml: search: ") and "\n" not in text


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    from biodl.tasks.tune import tune

    tmp = tmp_path_factory.mktemp("tune")
    best = tune(_config(tmp), 8, tmp / "out", progress=False)
    return tmp / "out", best


def test_a_search_scores_on_validation_and_tests_the_best_once(search):
    out, best = search
    summary = json.loads((out / "summary.json").read_text())
    trials = pd.read_csv(out / "trials.csv")
    assert summary["trials"] == len(trials) == 8 and summary["complete"] + summary["pruned"] == 8
    for t in sorted((out / "trials").iterdir()):
        metrics = json.loads((t / "metrics.json").read_text()) if (t / "metrics.json").is_file() else {}
        assert not any(k.startswith("test/") for k in metrics)  # a trial has no test metric
        assert not (t / "test_predictions.csv").exists()
        assert yaml.safe_load((t / "config.yaml").read_text())["trial"] is True
    done = trials[trials["state"] == "complete"]
    assert summary["best_value"] == pytest.approx(done["value"].min())  # val/loss, minimised
    best_yaml = yaml.safe_load((out / "best.yaml").read_text())
    assert best_yaml["optimizer"]["lr"] == pytest.approx(summary["best"]["optimizer.lr"]) and not best_yaml["trial"]
    m = json.loads((best / "metrics.json").read_text())
    assert "test/mcc_ci_low" in m and (out / "default" / "metrics.json").is_file()
    table = pd.read_csv(best / "tuned_vs_default.csv")
    assert table["config"].tolist() == ["default (the config as given)", "tuned (best.yaml)"]
    assert table.loc[1, "test mcc"].startswith(f"{m['test/mcc']:.3f} [")
    page = (best / "report.html").read_text()
    assert "Tuning" in page and (best / "tuning_history.png").is_file() and "tuning history" in page


def test_a_search_never_reads_the_test_split(tmp_path, monkeypatch):
    """The trials' split hands out test indices that raise on any use."""
    import biodl.tasks.tabular as tabular
    from biodl.tasks.tune import tune

    real, trials = tabular._split, []

    def split(config, y, path):
        parts = real(config, y, path)
        if config.trial:
            trials.append(config.name)
            parts = {**parts, "test": Poisoned()}
        return parts

    monkeypatch.setattr(tabular, "_split", split)
    tune(_config(tmp_path), 3, tmp_path / "out", progress=False)
    assert len(trials) == 3 and (tmp_path / "out" / "best" / "metrics.json").is_file()


def test_the_same_seed_proposes_the_same_trials(search, tmp_path):
    from biodl.tasks.tune import tune

    out, _ = search
    tune(_config(tmp_path), 8, tmp_path / "again", progress=False)
    a, b = (pd.read_csv(d / "trials.csv") for d in (out, tmp_path / "again"))
    pd.testing.assert_frame_equal(a, b)


def test_kill_and_resume_repeats_no_finished_trial(search, tmp_path, monkeypatch, cli):
    import biodl.tasks.tabular as tabular
    from biodl.tasks.tune import tune

    out_ref, _ = search
    real = tabular.train

    def dying(config, out=None, resume=False):
        if config.name.endswith("trial004"):
            raise KeyboardInterrupt  # killed during the fifth trial
        return real(config, out, resume)

    monkeypatch.setattr(tabular, "train", dying)
    with pytest.raises(KeyboardInterrupt):
        tune(_config(tmp_path), 8, tmp_path / "out", progress=False)
    finished = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "trials").iterdir()}
    assert sorted(finished) == [f"trial{i:03d}" for i in range(4)]
    monkeypatch.setattr(tabular, "train", real)
    r = cli("tune", "--resume", "--out", tmp_path / "out")
    assert r.code == 0, r.err
    again = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "trials").iterdir()}
    assert all(again[k] == v for k, v in finished.items())  # the finished four untouched
    # the interrupted trial re-ran with its own parameters (as trial 5), and the search went on as if
    # never stopped: the same proposals as the uninterrupted search
    resumed = pd.read_csv(tmp_path / "out" / "trials.csv")
    ref = pd.read_csv(out_ref / "trials.csv")
    numbers = ["optimizer.lr", "optimizer.weight_decay", "model.args.dropout"]
    assert len(resumed) == 8 and resumed["trial"].tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    assert np.allclose(resumed[numbers].to_numpy(float), ref[numbers].to_numpy(float))
    assert resumed["model.args.hidden"].tolist() == ref["model.args.hidden"].tolist()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, cli, search):
    assert_one_line_error(cli("tune", _config(tmp_path, **{"optimizer.lrr": {"uniform": [0.1, 0.2]}}),
                              "--out", tmp_path / "a"), "search: optimizer.lrr: unknown key")
    assert_one_line_error(cli("tune", _config(tmp_path, **{"optimizer.lr": {"uniform": [0.2, 0.1]}}),
                              "--out", tmp_path / "a"), "low < high")
    assert_one_line_error(cli("tune", _config(tmp_path, **{"optimizer.lr": {"log_uniform": [0, 0.1]}}),
                              "--out", tmp_path / "a"), "above 0")
    assert_one_line_error(cli("tune", EXAMPLE.with_name("heart_failure_mlp.yaml"), "--out", tmp_path / "a"),
                          "no search: block")
    assert not (tmp_path / "a").exists()
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("tune", "--resume", "--out", tmp_path / "empty"), "holds no study to resume")
    out, _ = search
    assert_one_line_error(cli("tune", _config(tmp_path, **{"optimizer.lr": {"log_uniform": [1e-3, 1e-2]}}),
                              "--resume", "--out", out), "another config")
    assert_one_line_error(cli("tune", _config(tmp_path), "--out", out), "exists")
    assert_one_line_error(cli("tune", _config(tmp_path), "--out", tmp_path / "b", "--metric", "test/mcc"),
                          "validation only")
    assert not (tmp_path / "b").exists() and not list((tmp_path / "empty").iterdir())


def _tune_killed_in_trial4(config: str, out: str) -> None:
    """(In a child process) ``biodl tune`` whose fifth trial's process gets SIGKILL."""
    import os
    import signal

    import biodl.tasks.tabular as tabular
    from biodl.tasks.tune import tune

    real = tabular.train

    def dying(config, out=None, resume=False):
        if config.name.endswith("trial004"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(config, out, resume)

    tabular.train = dying
    tune(config, 8, out, progress=False)


def test_a_hard_kill_leaves_a_running_trial_that_resume_runs_again(search, tmp_path, cli):
    """SIGKILL in the fifth trial (the study keeps it as running): resume re-runs it and goes on."""
    from tests.forked import call  # a child process, forked from a warm server

    done = call(_tune_killed_in_trial4, str(_config(tmp_path)), str(tmp_path / "out"))
    assert done.returncode == -9, done.stderr[-2000:]
    import optuna

    study = optuna.load_study(study_name="biodl", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert [t.state.name for t in study.trials][-1] == "RUNNING"
    r = cli("tune", "--resume", "--out", tmp_path / "out")
    assert r.code == 0, r.err
    out_ref, _ = search
    resumed, ref = (pd.read_csv(d / "trials.csv") for d in (tmp_path / "out", out_ref))
    assert len(resumed) == 8 and np.allclose(resumed["optimizer.lr"], ref["optimizer.lr"])


def _squares(tmp: Path, split: dict) -> Path:
    """An image tune config over 80 generated 16 px images (class 'pos': a bright corner square)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(80):
        img = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
        if i % 2:
            img[2:7, 2:7] = 250
        d = tmp / "data" / ("pos" if i % 2 else "neg")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")
    raw = {"name": "squares", "task": "image", "n_boot": 200,
           "data": {"path": str(tmp / "data"), "cache_dir": str(tmp / "cache"), "batch_size": 16, **split},
           "model": {"name": "resnet_small", "args": {"width": 8, "blocks": 1}},
           "trainer": {"epochs": 3, "monitor": "val/roc_auc", "mode": "max"},
           "search": {"optimizer.lr": {"log_uniform": [1e-3, 3e-2]}, "model.args.width": {"choice": [4, 8]}}}
    (tmp / "img.yaml").write_text(yaml.safe_dump(raw))
    return tmp / "img.yaml"


@pytest.mark.parametrize("split", [{}, {"split": "kfold", "folds": 2}], ids=["holdout", "kfold"])
def test_image_trials_never_see_test_images(split, tmp_path, monkeypatch):
    """Image trials (a holdout, or a k-fold parent scored on its folds' mean) get poisoned test
    indices; the best config is then trained and tested once."""
    import biodl.tasks.image as image
    from biodl.tasks.tune import tune

    real, seen = image.split_images, []

    def poisoned(config, data, where):
        parts, how = real(config, data, where)
        if config.trial:
            seen.append(how)
            parts = {**parts, "test": Poisoned()}
        return parts, how

    monkeypatch.setattr(image, "split_images", poisoned)
    best = tune(_squares(tmp_path, split), 2, tmp_path / "out", progress=False)
    trials = sorted((tmp_path / "out" / "trials").iterdir())
    assert len(trials) == 2 and all(not (t / "test_predictions.csv").exists() for t in trials)
    m = json.loads((trials[0] / "metrics.json").read_text())
    assert "val/roc_auc" in m and not any(k.startswith("test/") for k in m)
    if split:
        folds = [json.loads((trials[0] / "folds" / f"fold{k}" / "metrics.json").read_text()) for k in (1, 2)]
        assert m["val/roc_auc"] == pytest.approx(np.mean([f["val/roc_auc"] for f in folds]))
        assert seen.count("kfold") == 2 and len(seen) == 6  # two parents, four folds
    else:
        assert len(seen) == 2
    assert "test/roc_auc_ci_low" in json.loads((best / "metrics.json").read_text())
