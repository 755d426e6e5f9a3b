"""Models that stand for several trained models: the mean of their class probabilities."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LogitMean", "ProbabilityMean"]


class ProbabilityMean(nn.Module):
    """The mean of ``members``' softmax probabilities, each member behind its own input
    normalisation (``means``/``stds``: per-channel, on the 0-1 scale, as each was trained) and,
    where given, recalibrated by its own map (``recalibrations``) before the mean.
    Input: (B, C, H, W) pixels in [0, 1]; output: (B, K) log of the mean probabilities, so that a
    softmax of the output gives the mean probabilities and cross-entropy is their log loss."""

    def __init__(self, members: list[nn.Module], means: list[list[float]], stds: list[list[float]],
                 recalibrations: list | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        #: each member's recalibration (``biodl.trust.calibration.Recalibration`` or None), applied before the mean
        self.recalibrations = list(recalibrations or [None] * len(members))
        # (members, C): kept 2-D, so the module can move to channels_last like any other
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        probs = []
        for i, m in enumerate(self.members):
            logp = torch.log_softmax(m((x - self.mean[i].view(1, -1, 1, 1)) / self.std[i].view(1, -1, 1, 1)).float(),
                                     dim=1)
            cal = self.recalibrations[i]
            probs.append((logp if cal is None else cal.log_prob(logp)).exp())
        return torch.stack(probs).mean(0).clamp_min(1e-12).log()


class LogitMean(nn.Module):
    """The mean of two-class ``members``' probabilities, each member giving one logit per row
    (B, 1) from the same input (B, F); output: (B, 1) the logit of the mean probability."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        p = torch.stack([torch.sigmoid(m(x).float()) for m in self.members]).mean(0).clamp(1e-12, 1 - 1e-12)
        return torch.log(p) - torch.log1p(-p)
