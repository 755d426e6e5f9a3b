"""Attention-based multiple-instance learning (``abmil``; Ilse et al. 2018): a slide (or any bag)
is a set of tile features, and its label is learnt from the bag alone.

Each tile's feature (D) is embedded (``hidden``), scored by gated attention,
a_i = w . (tanh(V h_i) * sigmoid(U h_i)), the scores softmaxed over the bag's tiles (padding
masked out), and the bag's embedding is the attention-weighted sum, classified by a linear head.
``attention(bags, mask)`` gives the weights (they sum to one over a bag's real tiles), which show
which tiles the bag's label leans on; ``tile_logits`` puts each tile alone through the head.
``pooling="mean"`` is the baseline: every tile weighs the same.

Bags of different sizes travel as one (B, N, D) tensor whose padding rows are NaN (see
:func:`biodl.data.bags.pad_bags`), or with an explicit (B, N) mask of real tiles.
"""

from __future__ import annotations

import torch
from typing import Literal

from torch import Tensor, nn

from ._registry import register_model

__all__ = ["AttentionMIL", "abmil"]


class AttentionMIL(nn.Module):
    """Gated-attention MIL: (B, N, D) tile features [+ (B, N) bool mask of real tiles] ->
    (B, num_classes) logits; :meth:`attention` -> (B, N) weights."""

    def __init__(self, in_features: int, num_classes: int = 2, hidden: int = 128, attention: int = 64,
                 dropout: float = 0.25, pooling: Literal["attention", "mean"] = "attention") -> None:
        super().__init__()
        if pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be attention or mean, got {pooling!r}")
        self.pooling = pooling
        if in_features < 1 or hidden < 1 or attention < 1 or num_classes < 2:
            raise ValueError("in_features, hidden and attention must be >= 1 and num_classes >= 2")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attend_v = nn.Linear(hidden, attention)
        self.attend_u = nn.Linear(hidden, attention)
        self.attend_w = nn.Linear(attention, 1)
        self.head = nn.Linear(hidden, num_classes)

    def _scores(self, h: Tensor, mask: Tensor) -> Tensor:
        if self.pooling == "mean":
            a = torch.zeros(h.shape[:2], dtype=h.dtype, device=h.device)
        else:
            a = self.attend_w(torch.tanh(self.attend_v(h)) * torch.sigmoid(self.attend_u(h))).squeeze(-1)  # (B, N)
        return torch.softmax(a.masked_fill(~mask, float("-inf")), dim=1)

    def _embed(self, bags: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, N, hidden) tile embeddings and the (B, N) mask (from the NaN padding when not given)."""
        if mask is None:
            mask = ~torch.isnan(bags).any(dim=-1)
        return self.embed(torch.where(mask[..., None], bags, torch.zeros((), dtype=bags.dtype, device=bags.device))), \
            mask

    def attention(self, bags: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N) attention weights of each bag's tiles (0 on padding; each bag's sum is 1)."""
        h, mask = self._embed(bags, mask)
        return self._scores(h, mask)

    def tile_logits(self, bags: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N, num_classes) each tile's logits, as if it were a bag alone."""
        return self.head(self._embed(bags, mask)[0])

    def forward(self, bags: Tensor, mask: Tensor | None = None) -> Tensor:
        h, mask = self._embed(bags, mask)  # (B, N, hidden)
        weights = self._scores(h, mask)
        return self.head(torch.einsum("bn,bnh->bh", weights, h))


@register_model
def abmil(in_features: int, num_classes: int = 2, hidden: int = 128, attention: int = 64,
          dropout: float = 0.25, pooling: Literal["attention", "mean"] = "attention") -> AttentionMIL:
    """Gated-attention MIL over bags of tile features (Ilse et al. 2018); ``pooling="mean"``: the
    mean of the tiles' embeddings instead."""
    return AttentionMIL(in_features, num_classes, hidden, attention, dropout, pooling)
