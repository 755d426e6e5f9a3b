"""``biodl tune``: hyper-parameter search on Optuna (#33), on validation only.

A config YAML with a ``search:`` block (:mod:`biodl.tasks.search`) is searched trial by trial:
each trial is an ordinary run in ``OUT/trials/trial<NNN>`` with ``trial: true`` (trained and
scored on its validation split; the test split is never read), and reports its validation metric
every epoch to a median pruner, which stops the unpromising. The study lives in ``OUT/study.db``
(SQLite). Trial ``k``'s proposal comes from a TPE sampler seeded with ``seed + k`` (k: finished
trials before it), so a search repeats exactly, and a killed one, resumed with ``--resume``,
goes on where it stopped: the trial that was running is re-run with its own parameters. At the
end the best parameters are written as ``OUT/best.yaml``, trained once as an ordinary run
(``OUT/best``, tested once) beside the untuned config (``OUT/default``), and ``OUT/best``'s
report gains a Tuning section: the optimisation history, the parameters' importances, the
trials and the tuned-vs-default table.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from .. import runs
from ..config import build_config, read_yaml
from ..engine.callbacks import Callback, with_callbacks
from ..errors import ConfigError, RunDirError
from ..io import atomic_write_json
from .registry import task_spec
from .search import Param, overrides_of, parse_space
from .tune_report import finish

__all__ = ["STUDY", "SUPPORTED", "read_search", "tune", "Pruning"]

STUDY, SETTINGS = "study.db", "tune.json"
#: tasks whose runs can be tuning trials (validation only) so far
SUPPORTED = ("tabular", "image", "sequence", "cells", "mil")


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("biodl tune", "needs Optuna: pip install 'biodl[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def read_search(path: str | Path) -> tuple[dict[str, Any], list[Param]]:
    """(the config without its search block, the checked search space) of a tune YAML."""
    raw = read_yaml(path)
    search = raw.pop("search", None)
    if search is None:
        raise ConfigError(path, "no search: block (e.g. search: {optimizer.lr: {log_uniform: [1e-4, 1e-2]}})")
    config = build_config(raw, [], where=str(path))
    if config.task not in SUPPORTED:
        raise ConfigError(path, f"biodl tune runs {', '.join(SUPPORTED)} configs so far, not {config.task}")
    if getattr(config, "ensemble", 1) > 1:
        raise ConfigError(path, "tune one model (ensemble: 1); train the best as an ensemble afterwards")
    return raw, parse_space(search, raw, str(path))


class Pruning(Callback):
    """Reports a trial's validation metric after every epoch; stops the trial the pruner prunes."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric, self.fits, self.offset = trial, metric, 0, 0

    def on_fit_start(self, trainer) -> None:
        """A k-fold trial fits once a fold: fold k reports its epochs after fold k - 1's."""
        self.offset = self.fits * trainer.max_epochs
        self.fits += 1

    def on_epoch_end(self, trainer, logs: dict[str, float]) -> None:
        value = logs.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), step=self.offset + trainer.epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr("epochs", trainer.epoch)
            raise _optuna().TrialPruned(f"pruned after epoch {trainer.epoch} ({self.metric} {value:.4g})")


#: trials of a search when none are asked for
TRIALS = 20


def _settings(out: Path, config_path: str | Path | None, trials: int | None, metric: str | None,
              resume: bool) -> dict[str, Any]:
    """What the study was started with (``tune.json``): a resume must agree with it."""
    if resume:
        if not (out / STUDY).is_file() or not (out / SETTINGS).is_file():
            raise RunDirError(out, "holds no study to resume (no study.db and tune.json)")
        saved = runs.read_json(out / SETTINGS)
        if config_path is not None:
            raw = read_yaml(config_path)
            if json.loads(json.dumps(raw, default=str)) != saved["config"]:
                raise RunDirError(out, f"holds the study of another config than {config_path}; resume it without "
                                       "a config (or with its own), or choose another --out")
        return saved
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(out, "exists; choose another --out, or --resume the study in it")
    if config_path is None:
        raise ConfigError("biodl tune", "give the config YAML with its search: block")
    raw, _ = read_search(config_path)  # every check before anything is written
    config = build_config(raw, [], where=str(config_path))
    metric = metric or config.trainer.monitor
    if not metric.startswith("val/"):
        raise ConfigError("--metric", f"a search is scored on validation only: give a val/ metric, not {metric}")
    mode = config.trainer.mode if metric == config.trainer.monitor else ("min" if "loss" in metric else "max")
    return {"config": json.loads(json.dumps(read_yaml(config_path), default=str)), "trials": trials or TRIALS,
            "metric": metric, "mode": mode, "seed": config.seed, "source": str(config_path)}


def tune(config_path: str | Path | None, trials: int | None, out: str | Path, timeout: float | None = None,
         resume: bool = False, metric: str | None = None, progress: bool = True) -> Path:
    """Run (or with ``resume`` continue) the search of ``config_path``'s search block into
    ``out``; then train and test the best once. Returns ``out/best``."""
    optuna = _optuna()
    out = Path(out)
    s = _settings(out, config_path, trials, metric, resume)
    if resume and trials:
        s["trials"] = trials
    raw = dict(s["config"])
    space = parse_space(raw.pop("search"), raw, s["source"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SETTINGS, s)
    study = optuna.create_study(study_name="biodl", storage=f"sqlite:///{out / STUDY}", load_if_exists=True,
                                direction="minimize" if s["mode"] == "min" else "maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5))
    _requeue_killed(study, out)
    train = task_spec(build_config(raw, [], where=s["source"]).task).command("train")
    started = time.monotonic()
    while _finished(study) < s["trials"] and (timeout is None or time.monotonic() - started < timeout):
        k = _finished(study)
        study.sampler = optuna.samplers.TPESampler(seed=s["seed"] + k, n_startup_trials=10)
        study.optimize(lambda t: _objective(t, raw, space, s, out, train), n_trials=1,
                       catch=(), show_progress_bar=False)
        if progress:
            last = study.trials[-1]
            shown = "pruned" if last.state.name == "PRUNED" else f"{s['metric']} {last.value:.4f}"
            print(f"trial {last.number + 1}/{s['trials']}: {shown}", flush=True)
    return finish(study, raw, space, s, out, train)


def _finished(study) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)


def _requeue_killed(study, out: Path) -> None:
    """Trials a kill or an interrupt stopped (left running, or failed): marked failed, their
    folders removed, their parameters queued again (once), so the resumed search runs the same
    trial next and no finished trial is run twice."""
    from optuna.trial import TrialState

    done = set(study.user_attrs.get("requeued", []))
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if t.number in done:
            continue
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        shutil.rmtree(out / "trials" / f"trial{t.number:03d}", ignore_errors=True)
        study.enqueue_trial(t.params, skip_if_exists=False)
        done.add(t.number)
    study.set_user_attr("requeued", sorted(done))


def _objective(trial, raw: dict[str, Any], space: list[Param], s: dict[str, Any], out: Path, train) -> float:
    values = {p.key: p.suggest(trial) for p in space}
    trial.set_user_attr("values", values)
    name = f"{raw.get('name', 'run')}-trial{trial.number:03d}"
    config = build_config(raw, [*overrides_of(values), "trial=true", f"name={name}", "trainer.progress=false"],
                          where=s["source"])
    folder = out / "trials" / f"trial{trial.number:03d}"
    with with_callbacks(Pruning(trial, s["metric"])):
        run = train(config, folder)
    trial.set_user_attr("epochs", int(run.metrics.get("epochs_trained", 0)))
    value = run.metrics.get(s["metric"])
    if value is None or not math.isfinite(value):
        raise ConfigError("--metric", f"the trials log no {s['metric']}; choose one of "
                                      f"{', '.join(k for k in run.metrics if k.startswith('val/'))}")
    return float(value)
