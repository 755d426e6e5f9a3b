"""Members' networks as one torch module under the predictor's rule (export, attributions)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..trust.calibration import Recalibration

__all__ = ["MemberMean"]


class MemberMean(nn.Module):
    """Members' networks under the predictor's rule, in torch: (B, ...) -> (B, K) log of the mean of
    their probabilities, each member's recalibrated by its map (``maps``, None: none) and the mean
    by ``parent``'s; a softmax of the output gives the probabilities, and cross-entropy is their
    log loss. Each member takes the same input (e.g. pixels in [0, 1]) and gives logits."""

    def __init__(self, members: list[nn.Module], maps: list[Recalibration | None] | None = None,
                 parent: Recalibration | None = None) -> None:
        super().__init__()
        self.members, self.parent = nn.ModuleList(members), parent
        self.maps = list(maps) if maps is not None else [None] * len(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = []
        for net, cal in zip(self.members, self.maps, strict=True):
            lp = torch.log_softmax(net(x).float(), dim=1)
            logp.append(lp if cal is None else cal.log_prob(lp))
        mean = torch.logsumexp(torch.stack(logp), dim=0) - math.log(len(logp))
        return mean if self.parent is None else self.parent.log_prob(mean)
