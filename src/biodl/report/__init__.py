"""Figures and tables for run directories (PNG, CSV, Markdown)."""

from .figures import boxplot_by_feature, borda_bar, distributions_by_outcome, per_class_curves, roc_pr_bands
from .tables import write_table

__all__ = [
    "boxplot_by_feature", "borda_bar", "distributions_by_outcome", "per_class_curves", "roc_pr_bands", "write_table",
]
