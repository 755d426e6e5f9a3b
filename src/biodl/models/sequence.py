"""Models for DNA sequences: one-hot (B, 4, L) in, (B, num_classes) logits out, any length L of
at least :attr:`min_length`.

- ``deepbind`` (Alipanahi et al. 2015): one layer of motif detectors (1-D convolutions the width
  of a binding site), rectified, pooled over the whole sequence by max (is the motif there?) and
  mean (how often?), then a small dense head. Its first-layer filters read as position weight
  matrices (:mod:`biodl.interpret.motifs`).
- ``basset`` (after Kelley et al. 2016, scaled down): three convolution blocks (batch norm,
  ReLU, max pooling), the same global pooling and head: motifs, then their combinations.

Both expose ``motifs`` (the first convolution) and ``min_length``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._registry import register_model

__all__ = ["DeepBind", "Basset", "StrandAverage", "deepbind", "basset"]


class _GlobalPool(nn.Module):
    """(B, C, L) -> (B, 2C): the max and the mean over positions."""

    def forward(self, h: Tensor) -> Tensor:
        return torch.cat([h.amax(dim=-1), h.mean(dim=-1)], dim=1)


def _head(features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


class _SequenceCNN(nn.Module):
    """What the sequence families share: ``features`` (first layer: the motif detectors) then
    ``head``; ``motifs`` is that first convolution."""

    features: nn.Sequential
    head: nn.Module

    @property
    def motifs(self) -> nn.Conv1d:
        """The first convolution: the motif detectors."""
        return self.features[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class DeepBind(_SequenceCNN):
    """Motif detectors (``filters`` convolutions of ``width`` bp) -> ReLU -> max and mean over the
    sequence -> dense (``hidden``) -> dropout -> logits. (B, 4, L) -> (B, num_classes)."""

    def __init__(self, num_classes: int = 2, filters: int = 64, width: int = 15, hidden: int = 32,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if filters < 1 or width < 1 or hidden < 1 or num_classes < 2:
            raise ValueError("filters, width and hidden must be >= 1 and num_classes >= 2")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.features = nn.Sequential(nn.Conv1d(4, filters, width), nn.ReLU(), _GlobalPool())
        self.head = _head(2 * filters, hidden, num_classes, dropout)
        self.min_length = width


class Basset(_SequenceCNN):
    """Three blocks of convolution (``widths``), batch norm, ReLU and max pooling by 2 (not after
    the last), the global max and mean, a dense head. (B, 4, L) -> (B, num_classes)."""

    def __init__(self, num_classes: int = 2, channels: int = 64, widths: tuple[int, ...] | list[int] = (11, 7, 5),
                 hidden: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        if channels < 1 or not widths or num_classes < 2:
            raise ValueError("channels and widths must be >= 1 and num_classes >= 2")
        layers: list[nn.Module] = []
        width_in = 4
        for i, w in enumerate(widths):
            layers += [nn.Conv1d(width_in, channels, int(w), padding=int(w) // 2), nn.BatchNorm1d(channels), nn.ReLU()]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool1d(2))
            width_in = channels
        self.features = nn.Sequential(*layers, _GlobalPool())
        self.head = nn.Sequential(nn.Dropout(dropout), _head(2 * channels, hidden, num_classes, dropout))
        self.min_length = max(int(widths[0]), 2 ** (len(widths) - 1))  # a motif's width; one pooled position


class StrandAverage(nn.Module):
    """A sequence model read on both strands: (B, 4, L) -> (B, K) log of the mean of its class
    probabilities on the sequence and on its reverse complement, so a softmax of the output is
    that mean, and a sequence and its reverse complement score the same."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        both = torch.stack([torch.log_softmax(self.model(x).float(), dim=1),
                            torch.log_softmax(self.model(x.flip(-1).flip(-2)).float(), dim=1)])
        return torch.logsumexp(both, dim=0) - torch.log(torch.tensor(2.0, device=x.device))


@register_model
def deepbind(num_classes: int = 2, in_chans: int = 4, filters: int = 64, width: int = 15, hidden: int = 32,
             dropout: float = 0.5) -> DeepBind:
    """DeepBind's motif-detector CNN for one-hot DNA (``in_chans`` must be 4)."""
    if in_chans != 4:
        raise ValueError(f"DNA one-hot has 4 channels, got in_chans={in_chans}")
    return DeepBind(num_classes, filters, width, hidden, dropout)


@register_model
def basset(num_classes: int = 2, in_chans: int = 4, channels: int = 64, widths: list[int] = (11, 7, 5),
           hidden: int = 32, dropout: float = 0.3) -> Basset:
    """A small Basset-like three-block CNN for one-hot DNA (``in_chans`` must be 4)."""
    if in_chans != 4:
        raise ValueError(f"DNA one-hot has 4 channels, got in_chans={in_chans}")
    return Basset(num_classes, channels, tuple(widths), hidden, dropout)
