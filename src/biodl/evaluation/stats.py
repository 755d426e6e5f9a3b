"""Statistics for reporting: bootstrap confidence intervals and descriptive tables by outcome."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st


__all__ = ["bootstrap_ci", "describe_by_outcome"]


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of the mean of ``values`` (N,).

    Each of the ``n_boot`` resamples draws N indices uniformly from all N values, with
    replacement (the workshop's version drew from [0, N-2] and so never drew the last value).
    NaNs are dropped first. Returns (mean, low, high); NaNs when no value is left.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(v.mean()), float(low), float(high)


def describe_by_outcome(df: pd.DataFrame, target: str, numeric: list[str], binary: list[str]) -> pd.DataFrame:
    """One row per feature: statistics for each outcome group and a univariate test.

    Numeric features: median, mean and standard deviation per group, Mann-Whitney U
    (two-sided). Binary features: count and percentage of 1s per group, chi-squared test
    of the 2x2 table (with Yates' correction, as R's ``chisq.test``).
    """
    groups = {int(k): g for k, g in df.groupby(target)}
    rows = []
    for col in numeric:
        a, b = groups[0][col].to_numpy(float), groups[1][col].to_numpy(float)
        row = {"feature": col, "kind": "numeric", "test": "Mann-Whitney U",
               "p_value": float(_st.mannwhitneyu(a, b, alternative="two-sided").pvalue)}
        for k, g in ((0, a), (1, b)):
            row.update({f"median_{k}": float(np.median(g)), f"mean_{k}": float(g.mean()),
                        f"sd_{k}": float(g.std(ddof=1))})
        rows.append(row)
    for col in binary:
        table = np.array([[np.sum(groups[k][col] == v) for v in (0, 1)] for k in (0, 1)])
        row = {"feature": col, "kind": "binary", "test": "chi-squared",
               "p_value": float(_st.chi2_contingency(table, correction=True).pvalue)}
        for k in (0, 1):
            row.update({f"count_{k}": int(table[k, 1]), f"percent_{k}": float(100 * table[k, 1] / table[k].sum())})
        rows.append(row)
    return pd.DataFrame(rows)
