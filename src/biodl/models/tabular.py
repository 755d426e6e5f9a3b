"""Models for tabular (clinical) data: the workshop's logistic net and an MLP.

Inputs are (B, F) float features; outputs are (B, num_outputs) logits, one
logit for a binary task.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._registry import register_model


__all__ = ["MLP", "LogisticNet", "mlp", "logistic"]


class MLP(nn.Module):
    """Fully connected net: [Linear -> BatchNorm? -> ReLU -> Dropout] x len(hidden) -> Linear."""

    def __init__(
        self,
        in_features: int,
        num_outputs: int = 1,
        hidden: tuple[int, ...] | list[int] = (32, 16),
        dropout: float = 0.1,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_outputs < 1:
            raise ValueError("in_features and num_outputs must be >= 1")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, int(h)))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(h)))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """(B, F) -> (B, num_outputs) logits."""
        return self.head(self.body(x))


class LogisticNet(nn.Module):
    """The workshop's logistic regression as a one-layer net: (B, F) -> (B, 1) logit."""

    def __init__(self, in_features: int, num_outputs: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


@register_model
def mlp(
    in_features: int,
    num_outputs: int = 1,
    hidden: list[int] = [32, 16],  # noqa: B006 - read only
    dropout: float = 0.1,
    batch_norm: bool = False,
) -> MLP:
    """Multi-layer perceptron for tabular features."""
    return MLP(in_features, num_outputs, tuple(hidden), dropout, batch_norm)


@register_model
def logistic(in_features: int, num_outputs: int = 1) -> LogisticNet:
    """Logistic regression written as a one-layer PyTorch net (the workshop's model)."""
    return LogisticNet(in_features, num_outputs)
