"""Evaluation: metrics under one vocabulary, the bootstrap, calibration, and the statistics
the studies report (``stats``, ``survival``, ``ranking``, ``importance``, imported from their
modules).

The metric layers are re-exported here: ``vocabulary`` (names) -> ``scores`` (counts, ranking
metrics) -> ``bootstrap`` (CIs) and ``reliability`` (calibration bins).
"""

from .bootstrap import bootstrap_cis, bootstrap_counts, curve_bands
from .reliability import calibration_bins, calibration_scores
from .scores import (BINARY_EXTRAS, BINARY_METRICS, MULTICLASS_METRICS, PREDICTIVE_VALUES, Counts, average_precision,
                     binary_extras, binary_metrics, binary_prob_scores, confusion_counts, count_scores,
                     f1_optimal_threshold, fov_scores, multiclass_metrics, multiclass_scores, one_vs_rest_scores,
                     roc_auc)
from .vocabulary import ALIASES, VOCABULARY, canonical

__all__ = [
    "VOCABULARY", "ALIASES", "canonical", "Counts", "confusion_counts", "count_scores", "BINARY_METRICS",
    "PREDICTIVE_VALUES", "binary_metrics", "MULTICLASS_METRICS", "multiclass_metrics", "roc_auc", "average_precision",
    "multiclass_scores", "BINARY_EXTRAS", "binary_extras", "one_vs_rest_scores", "binary_prob_scores",
    "f1_optimal_threshold", "fov_scores", "bootstrap_counts", "curve_bands", "bootstrap_cis", "calibration_bins",
    "calibration_scores",
]
