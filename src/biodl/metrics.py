"""Classification metrics, from torchmetrics (DDP-aware: states are synced across ranks).

Binary metrics take probabilities of the positive class, (N,) floats in [0, 1],
and targets, (N,) integers in {0, 1}.
"""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryF1Score,
    BinaryMatthewsCorrCoef,
    BinaryRecall,
    BinarySpecificity,
)

#: name in metrics.json -> what it is
BINARY_METRICS = {
    "mcc": "Matthews correlation coefficient",
    "accuracy": "accuracy at threshold 0.5",
    "f1": "F1 score of the positive class",
    "roc_auc": "area under the ROC curve",
    "pr_auc": "area under the precision-recall curve (average precision)",
    "tpr": "true positive rate (sensitivity, recall)",
    "tnr": "true negative rate (specificity)",
}


def binary_metrics(threshold: float = 0.5) -> MetricCollection:
    """The binary classification metrics of :data:`BINARY_METRICS` as one collection."""
    return MetricCollection(
        {
            "mcc": BinaryMatthewsCorrCoef(threshold=threshold),
            "accuracy": BinaryAccuracy(threshold=threshold),
            "f1": BinaryF1Score(threshold=threshold),
            "roc_auc": BinaryAUROC(),
            "pr_auc": BinaryAveragePrecision(),
            "tpr": BinaryRecall(threshold=threshold),
            "tnr": BinarySpecificity(threshold=threshold),
        },
        compute_groups=False,
    )
