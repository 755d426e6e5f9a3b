"""Saved predictions and what is derived from them: per-class table, confusion matrix, ROC and
precision-recall curves per class, and calibration (reliability diagram and ECE).

Everything here is computed from ``<prefix>_predictions.csv`` alone, so ``biodl report`` can
redraw it from a finished run without the data or the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..errors import RunDirError
from ..io import atomic_write_text
from ..evaluation import one_vs_rest_scores
from .figures import confusion_heatmap, per_class_curves, reliability_diagram
from .tables import write_table

__all__ = ["PROB", "save_predictions", "load_predictions", "per_patient", "prediction_artefacts"]


PROB = "p_"


def save_predictions(out_dir: str | Path, prefix: str, y: np.ndarray, prob: np.ndarray, classes: list[str],
                     rows: np.ndarray | None = None, sources: list[str] | None = None,
                     patients: np.ndarray | None = None, extra: dict | None = None,
                     after: dict | None = None) -> Path:
    """``<prefix>_predictions.csv``: one row per sample with ``row`` (its index in the data set),
    ``extra`` columns (e.g. the fold), ``source`` (its file, where known) and ``patient`` (where
    known), ``label`` (true class index), ``true``, ``predicted``, ``p_<class>`` for each class
    and then the ``after`` columns (e.g. each case's uncertainty).
    ``prob``: (N, K) probabilities, or (N,) probabilities of class 1 for two classes."""
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim == 1:
        prob = np.column_stack([1 - prob, prob])
    y = np.asarray(y).astype(int)
    pred = prob.argmax(axis=1)
    df = pd.DataFrame({"row": np.arange(len(y)) if rows is None else np.asarray(rows), **(extra or {})})
    if sources is not None:
        df["source"] = list(sources)
    if patients is not None:
        df["patient"] = [str(p) for p in patients]
    df = df.assign(label=y, true=[classes[i] for i in y], predicted=[classes[i] for i in pred])
    for k, name in enumerate(classes):
        df[f"{PROB}{name}"] = prob[:, k]
    for name, values in (after or {}).items():
        df[name] = values
    path = Path(out_dir) / runs.predictions_file(prefix)
    atomic_write_text(path, df.to_csv(index=False, float_format="%.8g"))
    return path


def load_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
    """(labels (N,), probabilities (N, K), class names, patient ids (N,) or None) from a
    predictions CSV."""
    path = Path(path)
    try:
        df = pd.read_csv(path, keep_default_na=False, dtype={"patient": str})
        cols = [c for c in df.columns if c.startswith(PROB)]
        y, prob = df["label"].to_numpy(int), df[cols].to_numpy(np.float64)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise RunDirError(path, f"unreadable predictions file ({exc})") from None
    if len(cols) < 2 or len(y) == 0 or y.min() < 0 or y.max() >= len(cols) or not np.isfinite(prob).all():
        raise RunDirError(path, "not a predictions file (needs label and two or more p_<class> columns)")
    if (bad := np.flatnonzero((prob < 0).any(axis=1) | (prob > 1).any(axis=1)
                              | (np.abs(prob.sum(axis=1) - 1) > 1e-3))).size:
        raise RunDirError(path, f"the p_<class> columns of {bad.size} row(s) (first: line {bad[0] + 2}) are not "
                                "probabilities (each in [0, 1], summing to 1)")
    return y, prob, [c[len(PROB):] for c in cols], df["patient"].to_numpy() if "patient" in df else None


def per_patient(patients: np.ndarray, y: np.ndarray, prob: np.ndarray) -> pd.DataFrame:
    """One row per patient from two-class predictions (``y`` (N,) labels, ``prob`` (N, 2)): images,
    the true fraction of class 1, the predicted fraction (images called class 1) and the mean
    probability of class 1."""
    table = pd.DataFrame({"patient": np.asarray(patients).astype(str), "true": y == 1,
                          "called": prob.argmax(axis=1) == 1, "p": prob[:, 1]})
    return table.groupby("patient", sort=True).agg(
        images=("true", "size"), true_fraction=("true", "mean"), predicted_fraction=("called", "mean"),
        mean_probability=("p", "mean")).reset_index()


def prediction_artefacts(out_dir: str | Path, prefix: str) -> dict[str, float]:
    """From ``<prefix>_predictions.csv`` in ``out_dir`` write ``<prefix>_per_class.csv/.md``
    (precision, sensitivity, F1, one-vs-rest ROC AUC and PR AUC, support; biodl's vocabulary),
    ``<prefix>_confusion.csv/.md/.png`` (rows true, columns predicted), ``<prefix>_curves.png``
    and ``<prefix>_calibration.csv/.png``. Returns ``{"<prefix>/ece": ...}``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    out_dir = Path(out_dir)
    y, prob, classes, patients = load_predictions(out_dir / runs.predictions_file(prefix))
    pred, labels = prob.argmax(axis=1), list(range(len(classes)))
    p, r, f, n = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    auc, ap = one_vs_rest_scores(y, prob)
    write_table(pd.DataFrame({"class": classes, "precision": p, "sensitivity": r, "f1": f, "roc_auc": auc,
                              "pr_auc": ap, "support": n}),
                out_dir / f"{prefix}_per_class", f"Per-class results ({prefix}; the areas one class against the rest)")
    counts = confusion_matrix(y, pred, labels=labels)
    cm = pd.DataFrame(counts, columns=[f"pred {c}" for c in classes])
    cm.insert(0, "true", classes)
    write_table(cm, out_dir / f"{prefix}_confusion", f"Confusion matrix ({prefix}): rows true, columns predicted")
    confusion_heatmap(counts, classes, f"Confusion matrix ({prefix})", out_dir / f"{prefix}_confusion.png")
    per_class_curves(y, prob, classes, prefix, out_dir / f"{prefix}_curves.png", patients)
    what = f"rate of {classes[1]}" if len(classes) == 2 else "accuracy (top label)"
    if patients is not None and len(classes) == 2:
        write_table(per_patient(patients, y, prob), out_dir / f"{prefix}_per_patient",
                    f"Per patient ({prefix}): true and predicted fraction of {classes[1]}")
    bins, ece = reliability_diagram(y, prob, what, f"Calibration ({prefix})", out_dir / f"{prefix}_calibration.png",
                                    patients)
    write_table(pd.DataFrame(bins, columns=["lo", "hi", "n", "confidence", "observed", "observed_low",
                                            "observed_high"]),
                out_dir / f"{prefix}_calibration", f"Calibration ({prefix}): ECE {ece:.4f}, 10 equal-width bins; "
                f"observed with its 95% bootstrap interval ({'patients' if patients is not None else 'cases'} "
                "resampled)")
    return {f"{prefix}/ece": ece}
