"""Attention MIL on IDC patient mosaics (#32): regions of real tissue labelled as a whole, learnt
from their tiles' features, against the pooling of a patch model's tile probabilities.

Each of the 10 embedded patients' patches (or ``--data``, a patient tree of the Kaggle layout) are
put back at their slide positions; every 4 x 4-patch window holding at least 4 tissue patches is
a bag, positive when it holds an IDC patch (Ilse et al. 2018's protocol on real tissue: 467 bags,
185 positive). The features are the penultimate layer of ``biodl run histopathology``'s 5 fold
networks (trained into ``OUT/patches``, or ``--set data.extractor=RUN``), fold k's for fold k,
and fold k of the MIL runs trains and tests on that network's patients. So no test patient
taught the features anything, but the features did learn from patch labels: the table measures
pooling (attention against the mean against a patch model's mean / max / top-3), not learning
from weak labels alone.

``OUT/abmil`` (gated attention) and ``OUT/mean`` (mean pooling, same features and folds) are k-fold
MIL runs; ``OUT/abmil/pooling.csv/.md`` sets them beside the patch model's poolings on the same
bags, bag ROC AUC and PR AUC with patient-level CIs, ABMIL minus mean pooling as a paired
difference, and how well attention finds the IDC patches (ROC AUC within positive bags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["NAME", "CONFIG", "run", "resume"]

NAME = "histopathology-mil"

CONFIG: dict[str, Any] = {
    "name": NAME, "task": "mil", "seed": 0,
    "data": {"dataset": "idc", "classes": ["no IDC", "IDC"], "bags": "window", "window": 4, "min_tiles": 4,
             "split": "kfold", "folds": 5},
    "model": {"name": "abmil", "args": {"hidden": 128, "attention": 64, "dropout": 0.25}},
    "optimizer": {"name": "adamw", "lr": 5e-4, "weight_decay": 1e-4},
    "trainer": {"epochs": 40, "monitor": "val/loss", "mode": "min"},
}


def run(out: str | Path | None = None, overrides: list[str] | None = None, data: str | Path | None = None) -> Path:
    """The patch model (unless ``data.extractor`` names one), both MIL runs, the pooling table;
    parts finished before (same config) are kept, so a rerun with the same ``--out`` resumes."""
    from .. import runs
    from ..config import build_config

    root = Path(out) if out is not None else runs.default_run_dir(NAME)
    overrides = list(overrides or [])
    if data is not None:
        overrides = ["data.dataset=null", f"data.path={data}", *overrides]
    if not any(o.startswith("data.extractor=") for o in overrides):
        overrides.append(f"data.extractor={root / 'patches'}")  # trained first, see _run
    config = build_config(CONFIG, overrides, where=f"study {NAME}")
    return _run(root, config, data)


def resume(out: str | Path) -> Path:
    """``biodl run histopathology-mil --resume --out OUT``: go on with OUT's own config."""
    from .. import runs

    config = runs.load_run_config(Path(out) / "abmil")
    return _run(Path(out), config, config.data.path)


def _part(train, config, where: Path) -> Path:
    """A finished part is kept (its config must be ``config``), a started one resumed."""
    from .. import runs
    from ..config import config_hash
    from ..errors import RunDirError

    if (where / runs.METRICS).is_file():
        if config_hash(runs.load_run_config(where)) != config_hash(config):
            raise RunDirError(where, "was run with another config; give another --out")
        return where
    return train(config, where, resume=(where / runs.CONFIG).is_file()).run_dir


def _run(root: Path, config, data: str | Path | None) -> Path:
    from .. import runs
    from ..tasks import task_command
    from . import histopathology

    root.mkdir(parents=True, exist_ok=True)
    patches = root / "patches"
    if Path(config.data.extractor).resolve() == patches.resolve() and not (patches / runs.METRICS).is_file():
        if (patches / runs.CONFIG).is_file():
            from . import resume_study

            resume_study("histopathology", patches)
        else:
            histopathology.run(patches, [], data)
    train = task_command("mil", "train")
    abmil = _part(train, config, root / "abmil")
    mean_model = config.model.model_copy(update={"args": {**config.model.args, "pooling": "mean"}})
    mean = _part(train, config.model_copy(update={"model": mean_model, "name": f"{config.name}-mean"}), root / "mean")
    _table(abmil, mean, config)
    return abmil


def _cell(m: dict, key: str) -> str:
    v, lo, hi = m.get(key), m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    return "" if v is None else f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def _table(abmil: Path, mean: Path, config) -> None:
    """``pooling.csv/.md`` in the ABMIL run (and its report), shown on screen."""
    import numpy as np
    import pandas as pd

    from .. import runs
    from ..evaluation import bootstrap_cis
    from ..evaluation.scores import average_precision, roc_auc
    from ..report.run_report import build_report
    from ..report.tables import print_table, write_table
    from ..tasks.mil_data import layout
    from ..tasks.mil_report import patch_pooling

    lay = layout(config)
    a, m = (runs.read_metrics(p / runs.METRICS) for p in (abmil, mean))
    rows = [{"bag score": "attention MIL (abmil)", "bags": int(a["test/n"]) if "test/n" in a else len(lay.labels),
             "ROC AUC": _cell(a, "test/roc_auc"), "PR AUC": _cell(a, "test/pr_auc"),
             "attention ROC AUC (IDC tiles)": _cell(a, "test/attention_roc_auc")},
            {"bag score": "mean pooling MIL (same features)", "bags": len(lay.labels),
             "ROC AUC": _cell(m, "test/roc_auc"), "PR AUC": _cell(m, "test/pr_auc"),
             "attention ROC AUC (IDC tiles)": "0.500 (uniform)"}]
    # paired: ABMIL minus mean pooling on the same out-of-fold bags, the same patient resamples
    pa, pm = (pd.read_csv(p / runs.predictions_file("test"), dtype={"patient": str}).sort_values("row")
              for p in (abmil, mean))
    positive = lay.classes[-1]
    y = pa["label"].to_numpy(int)
    both = np.stack([pa[f"p_{positive}"].to_numpy(), pm[f"p_{positive}"].to_numpy()], axis=1)

    def diff(yy, ss):
        return {"d": roc_auc(yy == 1, ss[:, 0]) - roc_auc(yy == 1, ss[:, 1])}

    lo, hi = bootstrap_cis(y, both, diff, config.n_boot, groups=pa["patient"].to_numpy())["d"]
    rows[0]["ABMIL - this (ROC AUC)"] = ""
    rows[1]["ABMIL - this (ROC AUC)"] = f"{diff(y, both)['d']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    patches = Path(config.data.extractor)
    pred = runs.predictions_file("test")
    if (patches / pred).is_file():
        tiles = pd.read_csv(patches / pred, dtype={"patient": str, "source": str})
        bags, pooled = patch_pooling(lay, tiles, [c for c in tiles.columns if c.startswith("p_")][-1][2:])
        yb, groups = lay.labels[bags], lay.groups[bags]
        for name, s in pooled.items():
            def score(yy, ss):
                return {"roc": roc_auc(yy == 1, ss[:, 0]), "pr": average_precision(yy == 1, ss[:, 0])}

            ci = bootstrap_cis(yb, s[:, None], score, config.n_boot, groups=groups)
            point = score(yb, s[:, None])
            rows.append({"bag score": f"patch model, {name} of tile probabilities", "bags": len(bags),
                         **{col: f"{point[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]"
                            for col, k in (("ROC AUC", "roc"), ("PR AUC", "pr"))},
                         "attention ROC AUC (IDC tiles)": "", "ABMIL - this (ROC AUC)": ""})
    table = pd.DataFrame(rows)
    note = (f"Out of fold, {config.data.folds} folds by patient; 95% CIs resample patients. Bags: {config.data.window} "
            f"x {config.data.window}-tile windows with >= {config.data.min_tiles} tiles, positive with an IDC tile.")
    write_table(table, abmil / "pooling", "Bag ROC AUC: attention MIL, mean pooling, a patch model's pooling", note)
    print_table(table, "IDC regions: attention MIL against pooling")
    report = runs.read_json(abmil / runs.LAYOUT) if (abmil / runs.LAYOUT).is_file() else {"sections": []}
    report["sections"] = [s for s in report.get("sections", []) if s.get("title") != "Against pooling"]
    report["sections"].insert(0, {"title": "Against pooling", "text": note, "items": ["pooling"]})
    build_report(abmil, report)
