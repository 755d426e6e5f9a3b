"""Survival analysis: group comparisons through lifelines (Kaplan-Meier curves with confidence
bands, log-rank tests across and between groups, Cox hazard ratios of groups), the Cox partial
likelihood as a loss (for neural Cox models, DeepSurv-style) and Harrell's concordance index.

Times are (N,) positive numbers, events (N,) 0/1 (1: the event happened at that time; 0:
censored then), risks (N,) log hazard ratios (higher: earlier event).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["cox_loss", "concordance_index", "compare_groups"]


def compare_groups(time: np.ndarray, event: np.ndarray, groups: np.ndarray, reference: str | None = None
                   ) -> dict:
    """Survival by group: median survival per group, the multivariate log-rank test across groups,
    pairwise log-rank tests, and a Cox model with the groups as indicators against ``reference``
    (default: the largest group): hazard ratios with 95% CIs. Returns a dict of plain values and
    two tables (``pairwise``, ``cox``)."""
    import pandas as pd
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import multivariate_logrank_test, pairwise_logrank_test

    time, event = np.asarray(time, dtype=float), np.asarray(event, dtype=float)
    groups = np.asarray(groups).astype(str)
    names = sorted(set(groups))
    reference = reference or max(names, key=lambda g: (groups == g).sum())
    medians = {}
    for g in names:
        km = KaplanMeierFitter().fit(time[groups == g], event[groups == g])
        medians[g] = float(km.median_survival_time_)
    overall = multivariate_logrank_test(time, groups, event)
    pairs = pairwise_logrank_test(time, groups, event).summary.reset_index()
    pairs.columns = ["group_a", "group_b", "chi2", "p", "-log2(p)"]
    design = pd.DataFrame({f"{g}": (groups == g).astype(float) for g in names if g != reference})
    design = design.assign(time=time, event=event)
    try:
        cox = CoxPHFitter().fit(design, "time", "event")
        table = cox.summary[["exp(coef)", "exp(coef) lower 95%", "exp(coef) upper 95%", "p"]].reset_index()
        table.columns = ["group", "hazard_ratio", "hr_low", "hr_high", "p"]
    except ConvergenceError:  # e.g. a group without events: its hazard ratio is 0 or infinite
        table = pd.DataFrame({"group": [g for g in names if g != reference], "hazard_ratio": np.nan,
                              "hr_low": np.nan, "hr_high": np.nan, "p": np.nan,
                              "note": "the Cox fit did not converge (a group without events?)"})
    return {"n": {g: int((groups == g).sum()) for g in names}, "events": {g: int(event[groups == g].sum())
            for g in names}, "median_years": medians, "logrank_chi2": float(overall.test_statistic),
            "logrank_p": float(overall.p_value), "reference": reference, "pairwise": pairs, "cox": table}


def cox_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str = "efron") -> torch.Tensor:
    """Negative log Cox partial likelihood, averaged over the events.

    For each distinct event time t with the set D of d events and the risk set R = {j: T_j >= t}:
    Breslow's term is ``sum_D risk_i - d log sum_R exp(risk_j)``; Efron's is ``sum_D risk_i -
    sum_{l<d} log(sum_R exp(risk_j) - l/d sum_D exp(risk_i))``. Without ties both are Cox's own.
    A batch without events gives 0 (connected to ``risk``, so backward works)."""
    if ties not in ("breslow", "efron"):
        raise ValueError(f"ties must be 'breslow' or 'efron', not {ties!r}")
    risk, time, event = risk.reshape(-1), time.reshape(-1), event.reshape(-1).to(torch.bool)
    if not bool(event.any()):
        return risk.sum() * 0.0
    order = torch.argsort(time, descending=True, stable=True)
    r, t, e = risk[order], time[order], event[order]
    _, group, counts = torch.unique_consecutive(t, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0) - 1  # a group's last position: its risk set is everything up to there
    log_s = torch.logcumsumexp(r, 0)[last]  # (G,) log sum over the risk set of each distinct time
    if ties == "breslow":
        return -(r - log_s[group])[e].sum() / e.sum()
    # Efron: the l-th of a time's d events (l = 0..d-1) sees the risk set less l/d of the events' sum
    n_groups = len(counts)
    d = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(0, group, e.to(r.dtype))
    neg_inf = torch.full((n_groups,), float("-inf"), dtype=r.dtype, device=r.device)
    log_e = neg_inf.scatter_reduce(0, group[e], r[e], reduce="amax", include_self=True)  # for a stable sum
    sum_e = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(
        0, group[e], torch.exp(r[e] - log_e[group[e]]))
    log_e = log_e + torch.log(sum_e.clamp_min(torch.finfo(r.dtype).tiny))  # log sum_D exp(risk)
    rank = torch.cumsum(e.to(torch.int64), 0) - 1  # events before this one, over all groups
    first = torch.zeros(n_groups, dtype=torch.int64, device=r.device).index_add_(0, group, e.to(torch.int64))
    first = torch.cumsum(first, 0) - first  # events in earlier groups (in this order)
    l_in_group = (rank - first[group])[e].to(r.dtype)
    g = group[e]
    share = torch.exp(log_e[g] - log_s[g]) * l_in_group / d[g]  # (l/d) sum_D / sum_R, in [0, 1)
    log_terms = log_s[g] + torch.log1p(-share)
    return -(r[e].sum() - log_terms.sum()) / e.sum()


def concordance_index(time: np.ndarray, risk: np.ndarray, event: np.ndarray) -> float:
    """Harrell's C: among comparable pairs (the shorter time is an event), the share where the
    shorter time has the higher risk; tied risks count a half. Pairs with equal times are not
    comparable unless exactly one of them is an event (it then comes first)."""
    time, risk, event = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (time, risk, event))
    ev = event.astype(bool)
    ti, tj = time[:, None], time[None, :]
    comparable = ev[:, None] & ((ti < tj) | ((ti == tj) & ~ev[None, :]))
    if not comparable.any():
        return float("nan")
    ri, rj = risk[:, None], risk[None, :]
    score = np.where(ri > rj, 1.0, np.where(ri == rj, 0.5, 0.0))
    return float(score[comparable].sum() / comparable.sum())
