"""The metric vocabulary: one name per quantity in every ``metrics.json``, ``metrics.csv`` and table.

``tpr``, ``recall``, ``auc``... are :data:`ALIASES` that :func:`canonical` maps, so older run
directories and configs still read.
"""

from __future__ import annotations

__all__ = ["VOCABULARY", "ALIASES", "canonical"]


#: canonical metric name (the key in every metrics.json, metrics.csv and table) -> what it is
VOCABULARY = {
    "accuracy": "accuracy: (TP + TN) / N",
    "balanced_accuracy": "balanced accuracy: the mean over classes of each class's sensitivity",
    "sensitivity": "sensitivity (true positive rate, recall): TP / (TP + FN)",
    "specificity": "specificity (true negative rate): TN / (TN + FP)",
    "precision": "precision (positive predictive value): TP / (TP + FP)",
    "npv": "negative predictive value: TN / (TN + FN)",
    "f1": "F1 score of the positive class (= Dice): 2TP / (2TP + FP + FN)",
    "mcc": "Matthews correlation coefficient",
    "roc_auc": "area under the ROC curve (more than two classes: the macro one-vs-rest mean)",
    "pr_auc": "area under the precision-recall curve (average precision)",
    "qwk": "quadratic weighted kappa (graded labels)",
    "ece": "expected calibration error",
    "brier": "Brier score",
    "nll": "negative log-likelihood of the true class",
}


#: another name for a quantity of :data:`VOCABULARY` -> its canonical name
ALIASES = {"tpr": "sensitivity", "recall": "sensitivity", "tnr": "specificity", "ppv": "precision", "dice": "f1",
           "auc": "roc_auc", "macro_auc": "roc_auc", "average_precision": "pr_auc"}


def canonical(key: str) -> str:
    """A metric key in the vocabulary: the name after the last ``/`` is renamed when it is an
    alias or starts with one and ``_`` (``test/tpr_ci_low`` -> ``test/sensitivity_ci_low``,
    ``human/auc`` -> ``human/roc_auc``); any other key comes back as it is."""
    head, sep, name = key.rpartition("/")
    for alias in sorted(ALIASES, key=len, reverse=True):
        if name == alias or name.startswith(alias + "_"):
            return f"{head}{sep}{ALIASES[alias]}{name[len(alias):]}"
    return key
