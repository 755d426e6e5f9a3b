"""biodl from Python: train a run, load a trained one, run a study.

    >>> import biodl
    >>> run = biodl.train("my_images/", epochs=20, out="runs/x")   # a folder of class folders
    >>> predictor = biodl.load(run)
    >>> predictor.predict("new_images/")                            # a DataFrame, one row per image

The command line (``biodl train``, ``biodl run``) goes through the same functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .errors import BiodlError, DataError, path_problem

__all__ = ["training_config", "train", "run_study"]

#: config file suffixes (anything else given to :func:`train` is data)
CONFIG_SUFFIXES = (".yaml", ".yml")


def training_config(config: Any = None, data: str | Path | None = None, *, images: str | Path | None = None,
                    model: str | None = None, epochs: int | None = None, ensemble: int | None = None,
                    overrides: list[str] | tuple[str, ...] = (), resume: bool = False,
                    out: str | Path | None = None) -> Any:
    """The config of a training run, checked: ``config`` (a YAML file, a mapping or a config
    object), with ``data`` (your own data in place of the config's), or from ``data`` alone with
    no config (images in any layout, the layout detected: a class-folder tree, a patient tree,
    .npz, a folder with X.npy/Y.npy, or a CSV of image,label[,patient] rows with ``images``, the
    folder of its images); or with ``resume``, the config of the run in ``out``. ``model``,
    ``epochs``, ``ensemble`` and ``overrides`` (``key.path=value`` strings, as ``--set``) change it."""
    from .config import build_config, config_dict, load_config
    from .runs import load_run_config

    for given in (data, images):  # before any data code is imported
        if given is not None and (problem := path_problem(given)):
            raise DataError(given, problem)
    quick = [f"data.path={data}"] if data is not None else []
    quick += [f"data.images={images}"] if images is not None else []
    quick += [f"model.name={model}"] if model is not None else []
    quick += [f"trainer.epochs={epochs}"] if epochs is not None else []
    quick += [f"ensemble={ensemble}"] if ensemble is not None else []
    overrides = list(overrides or [])
    if config is None and data is not None:
        raw = {"name": Path(data).stem or "images", "task": "image", "data": {}, "model": {"name": "auto"},
               "trainer": {"epochs": 20}}
        return build_config(raw, [*quick, *overrides], where="--data")
    if config is None:
        if not (resume and out is not None):
            raise BiodlError("--config", "required (or --data, or --resume with --out RUN_DIR)")
        if overrides or quick:
            raise BiodlError("--set", "cannot change the config of a run being resumed")
        return load_run_config(out)
    if data is not None:
        quick = ["data.dataset=null", *quick]
    if isinstance(config, (str, Path)):
        return load_config(config, [*quick, *overrides])
    raw = config_dict(config) if isinstance(config, BaseModel) else config
    return build_config(raw, [*quick, *overrides], where="config")


def train(source: Any = None, out: str | Path | None = None, *, images: str | Path | None = None,
          model: str | None = None, epochs: int | None = None, ensemble: int | None = None,
          overrides: list[str] | tuple[str, ...] = (), resume: bool = False) -> Any:
    """Train a run and return it (:class:`~biodl.tasks.common.Run`: its folder and test metrics).

    Args:
        source: a config (a ``.yaml`` file, a mapping or a config object), or data to train on
            with no config (see :func:`training_config`); None with ``resume``.
        out: the run directory (default ``runs/<name>-<time>``); with ``resume``, the run to go on with.
        images, model, epochs, ensemble, overrides: as :func:`training_config`.

    Example:
        >>> run = biodl.train("examples/heart_failure_mlp.yaml", overrides=["seed=1"], out="runs/seed1")
        >>> run.metrics["test/mcc"]
    """
    from .tasks import task_command

    is_config = isinstance(source, (dict, BaseModel)) or (isinstance(source, (str, Path)) and
                                                          Path(source).suffix.lower() in CONFIG_SUFFIXES)
    config = training_config(source if is_config else None, None if is_config else source, images=images,
                             model=model, epochs=epochs, ensemble=ensemble, overrides=overrides, resume=resume,
                             out=out)
    return task_command(config.task, "train")(config, out, resume=resume)


def run_study(name: str, out: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
              data: str | Path | None = None) -> Any:
    """Run study ``name`` (see ``biodl studies``) end to end, on its embedded data or on ``data``;
    returns the run (its folder and metrics)."""
    from . import runs
    from .studies import get_study
    from .tasks.common import Run

    run_dir = Path(get_study(name).run(out, list(overrides), data))
    metrics = runs.read_metrics(run_dir / runs.METRICS) if (run_dir / runs.METRICS).is_file() else {}
    return Run(run_dir, {k: v for k, v in metrics.items() if v is not None})
