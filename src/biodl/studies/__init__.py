"""Studies: named, ready-to-run compositions of library parts (``biodl run STUDY``).

Each study module defines ``NAME`` and ``run(out, overrides, data) -> run_dir``
(``data``: a file of the user's own in place of the embedded default); a study that adds to the
finished run (tables beside published results) does it in ``finish(run_dir)``, which a resumed
run gets too.
"""

from __future__ import annotations

import difflib
from importlib import import_module
from types import ModuleType

from ..errors import ConfigError

#: study name -> (module, one-line summary); described here so that listing the studies imports none
_STUDIES = {
    "cell-lines": (
        "cell_lines",
        "Single cells of 5 lung cancer lines (CellBench, 3 plates): MLP vs SVM/kNN/RF/LR out of plate, "
        "rejection"),
    "heart-failure": (
        "heart_failure",
        "Chicco & Jurman 2020 replicated: 10 classifiers x 100 splits, CIs, Borda ranking, vs the "
        "paper's tables"),
    "heart-failure-mlp": (
        "heart_failure_mlp",
        "MLP on the embedded heart-failure records (11 clinical features, death event); the engine's "
        "end-to-end demo"),
    "histopathology": (
        "histopathology",
        "IDC in breast H&E patches (10 embedded patients, or --data): patient-grouped split, "
        "patient-level CIs"),
    "histopathology-mil": (
        "histopathology_mil",
        "IDC regions from tile features: attention MIL vs mean pooling vs a patch model's pooling, "
        "patient CIs"),
    "retinopathy": (
        "retinopathy",
        "RetinaMNIST DR grading (5 grades, official splits): small ResNet, QWK and AUC with CIs"),
    "tcga-melanoma": (
        "tcga_melanoma",
        "TCGA melanoma RNA-seq: normalisation, clusters vs the 2015 subclasses, survival by cluster, "
        "deep vs classical models"),
    "tf-binding": (
        "tf_binding",
        "Transcription-factor binding from DNA (5 ENCODE ChIP-seq sets): DeepBind CNN vs k-mer baseline, "
        "motifs"),
    "vessels": (
        "vessels",
        "CHASE_DB1 retinal vessels (20 train / 8 test): patch U-Net, FOV-only AUC/F1 vs the second "
        "observer"),
}
_MODULES = {name: module for name, (module, _) in _STUDIES.items()}


def list_studies() -> dict[str, str]:
    """Study name -> one-line summary."""
    return {name: summary for name, (_, summary) in _STUDIES.items()}


def get_study(name: str) -> ModuleType:
    if name not in _MODULES:
        close = difflib.get_close_matches(name, list(_MODULES), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"study {name}", f"no such study; {hint}known: {', '.join(_MODULES)}")
    return import_module(f".{_MODULES[name]}", __name__)


def resume_study(name: str, out):
    """Continue the interrupted run of study ``name`` in ``out`` from its last checkpoint, with
    the run's own config. Returns the run directory."""
    from ..runs import load_run_config
    from ..tasks import task_command

    study = get_study(name)
    if hasattr(study, "resume"):  # a study of several runs continues each its own way
        return study.resume(out)
    if not hasattr(study, "CONFIG"):
        raise ConfigError("--resume", f"study {name} trains no checkpoints and cannot be resumed; run it again "
                                      "with a new --out")
    config = load_run_config(out)
    if config.name != study.CONFIG["name"]:
        raise ConfigError(out, f"is a run of {config.name!r}, not of study {name!r}")
    run_dir = task_command(config.task, "train", out)(config, out, resume=True).run_dir
    if hasattr(study, "finish"):
        study.finish(run_dir)
    return run_dir


def run_config_study(raw: dict, name: str, out=None, overrides: list[str] | None = None, data=None):
    """Run a study that is a task config (``raw``): ``--set`` overrides apply, and ``data`` (a
    user's file or folder) replaces the embedded data set. Returns the run directory."""
    from ..config import build_config
    from ..tasks import task_command

    if data is not None:
        overrides = ["data.dataset=null", f"data.path={data}", *(overrides or [])]
    config = build_config(raw, overrides, where=f"study {name}")
    return task_command(config.task, "train")(config, out).run_dir
