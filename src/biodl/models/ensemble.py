"""Models that stand for several trained models: the mean of their class probabilities."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ProbabilityMean"]


class ProbabilityMean(nn.Module):
    """The mean of ``members``' softmax probabilities, each member behind its own input
    normalisation (``means``/``stds``: per-channel, on the 0-1 scale, as each was trained).
    Input: (B, C, H, W) pixels in [0, 1]; output: (B, K) log of the mean probabilities, so that a
    softmax of the output gives the mean probabilities and cross-entropy is their log loss."""

    def __init__(self, members: list[nn.Module], means: list[list[float]], stds: list[list[float]]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        # (members, C): kept 2-D, so the module can move to channels_last like any other
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        probs = [torch.softmax(m((x - self.mean[i].view(1, -1, 1, 1)) / self.std[i].view(1, -1, 1, 1)).float(), dim=1)
                 for i, m in enumerate(self.members)]
        return torch.stack(probs).mean(0).clamp_min(1e-12).log()
