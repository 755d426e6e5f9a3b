"""Survival analysis pieces: the Cox partial likelihood as a loss (for neural Cox models,
DeepSurv-style) and Harrell's concordance index.

Times are (N,) positive numbers, events (N,) 0/1 (1: the event happened at that time; 0:
censored then), risks (N,) log hazard ratios (higher: earlier event).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["cox_loss", "concordance_index"]


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
