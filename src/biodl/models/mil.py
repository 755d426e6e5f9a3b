"""Attention-based multiple-instance learning (``abmil``; Ilse et al. 2018): a slide (or any bag)
is a set of tile features, and its label is learnt from the bag alone.

Each tile's feature (D) is embedded (``hidden``), scored by gated attention,
a_i = w . (tanh(V h_i) * sigmoid(U h_i)), the scores softmaxed over the bag's tiles (padding
masked out), and the bag's embedding is the attention-weighted sum, classified by a linear head.
``attention(bags, mask)`` gives the weights (they sum to one over a bag's real tiles), which show
which tiles the bag's label leans on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._registry import register_model

__all__ = ["AttentionMIL", "abmil"]


class AttentionMIL(nn.Module):
    """Gated-attention MIL: (B, N, D) tile features [+ (B, N) bool mask of real tiles] ->
    (B, num_classes) logits; :meth:`attention` -> (B, N) weights."""

    def __init__(self, in_features: int, num_classes: int = 2, hidden: int = 128, attention: int = 64,
                 dropout: float = 0.25) -> None:
        super().__init__()
        if in_features < 1 or hidden < 1 or attention < 1 or num_classes < 2:
            raise ValueError("in_features, hidden and attention must be >= 1 and num_classes >= 2")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attend_v = nn.Linear(hidden, attention)
        self.attend_u = nn.Linear(hidden, attention)
        self.attend_w = nn.Linear(attention, 1)
        self.head = nn.Linear(hidden, num_classes)

    def _scores(self, h: Tensor, mask: Tensor | None) -> Tensor:
        a = self.attend_w(torch.tanh(self.attend_v(h)) * torch.sigmoid(self.attend_u(h))).squeeze(-1)  # (B, N)
        if mask is not None:
            a = a.masked_fill(~mask, float("-inf"))
        return torch.softmax(a, dim=1)

    def attention(self, bags: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N) attention weights of each bag's tiles (0 on padding; each bag's sum is 1)."""
        return self._scores(self.embed(bags), mask)

    def forward(self, bags: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.embed(bags)  # (B, N, hidden)
        weights = self._scores(h, mask)
        return self.head(torch.einsum("bn,bnh->bh", weights, h))


@register_model
def abmil(in_features: int, num_classes: int = 2, hidden: int = 128, attention: int = 64,
          dropout: float = 0.25) -> AttentionMIL:
    """Gated-attention MIL over bags of tile features (Ilse et al. 2018)."""
    return AttentionMIL(in_features, num_classes, hidden, attention, dropout)
