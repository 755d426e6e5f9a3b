"""Cells runs beside classical classifiers and their markers: the baselines under a k-fold run's
own folds (each fold's cells, genes and scaling), and the genes a run leans on (integrated
gradients) beside a linear SVM's coefficients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import runs
from ..evaluation.scores import per_class_f1
from ..omics.cell_models import fit_baselines
from ..omics.cells import panel_matrix
from ..trust.novelty import threshold
from .cells import CellData, preprocessor, split

__all__ = ["compare_under_folds", "markers"]


def compare_under_folds(run_dir: Path, predictor: Any, data: CellData, alpha: float = 0.05) -> pd.DataFrame:
    """One row per method: F1 per class, median F1, the share unassigned and seconds, of a k-fold
    cells run (``predictor``: :func:`biodl.load` of ``run_dir``; its pooled out-of-fold
    predictions; unassigned: its conformal set not one class) and of each baseline fitted on every
    fold's training cells with that fold's preprocessing settings (the linear SVM's unassigned:
    its largest decision value under the split-conformal threshold of the fold's validation
    cells at ``alpha``; the others never reject)."""

    classes, k = data.classes, len(data.classes)
    pooled = pd.read_csv(run_dir / runs.predictions_file("test"), keep_default_na=False)
    y, mlp = pooled["label"].to_numpy(int), pooled[[f"p_{c}" for c in classes]].to_numpy().argmax(axis=1)
    sets = pooled["set"] if "set" in pooled else None
    off = None if sets is None else float(np.mean((sets.str.count(",") > 0) | (sets == "{}")))
    seconds = runs.read_json(run_dir / runs.MANIFEST).get("seconds", {}).get("total")
    rows = {f"MLP (biodl, {predictor.config.model.args.get('hidden', '')})": (y, mlp, off, seconds)}
    found: dict[str, list] = {}
    for member in predictor.members:
        parts = split(member.config, data)
        pre = preprocessor(member.config).fit(data.cells.subset(parts["train"]))
        x = {part: pre.transform(data.cells.subset(parts[part])) for part in ("train", "val", "test")}
        fitted = fit_baselines(x["train"], data.labels[parts["train"]], {"val": x["val"], "test": x["test"]})
        for name, f in fitted.items():
            cut = threshold(-f["decision"]["val"], alpha) if name == "linear SVM" else None
            off = (-f["decision"]["test"] > cut) if cut is not None else np.zeros(len(parts["test"]), bool)
            found.setdefault(name, []).append((data.labels[parts["test"]], f["predicted"]["test"], off,
                                               f["seconds"]))
    for name, folds in found.items():
        rows[name] = (np.concatenate([f[0] for f in folds]), np.concatenate([f[1] for f in folds]),
                      float(np.concatenate([f[2] for f in folds]).mean()) if name == "linear SVM" else None,
                      sum(f[3] for f in folds))
    out = []
    for name, (yy, pred, off, secs) in rows.items():
        f1 = per_class_f1(yy, pred, k)
        out.append({"method": name, **{c: round(float(v), 3) for c, v in zip(classes, f1, strict=True)},
                    "median F1": round(float(np.nanmedian(f1)), 3),
                    "unassigned": "" if off is None else f"{off:.1%}", "seconds": "" if secs is None else
                    round(float(secs), 1)})
    return pd.DataFrame(out)


def markers(predictor: Any, data: CellData, n: int = 5, seed: int = 0) -> pd.DataFrame:
    """Per class, the ``n`` genes the run leans on most (mean |integrated gradient| of its
    probability's logit over the class's cells, from no expression) beside the ``n`` largest
    coefficients of a linear SVM fitted on every cell (preprocessed as the run's settings say),
    and how many the two lists share."""
    from ..omics.expression_models import integrated_gradients

    net = predictor.as_module(recalibrated=False)
    x = panel_matrix(data.cells, predictor.pre).toarray()
    pre = preprocessor(predictor.config, n_pcs=0, seed=seed).fit(data.cells)  # the genes themselves
    svm = fit_baselines(pre.transform(data.cells), data.labels, {}, seed, ["linear SVM"])["linear SVM"]["model"]
    panel = np.asarray(predictor.pre.panel)
    rows = []
    net.eval()
    for c, name in enumerate(data.classes):
        ig = integrated_gradients(net, x[data.labels == c], c)
        mine = panel[np.argsort(-ig, kind="stable")[:n]].tolist()
        theirs = pre.genes[np.argsort(-svm.coef_[c], kind="stable")[:n]].tolist()
        rows.append({"class": name, "MLP (integrated gradients)": ", ".join(mine),
                     "linear SVM (coefficients)": ", ".join(theirs), "shared": len(set(mine) & set(theirs))})
    return pd.DataFrame(rows)
