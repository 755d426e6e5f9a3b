"""U-Net (Ronneberger et al. 2015) for binary segmentation, e.g. retinal vessels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._registry import register_model


__all__ = ["UNet", "unet"]


def _double_conv(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                               nn.ReLU(inplace=True)]
    if dropout:
        layers.append(nn.Dropout2d(dropout))
    layers += [nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """(B, C, H, W) -> (B, out_chans, H, W) logits; H and W divisible by 2**depth.

    ``depth`` poolings, widths ``width * 2**level`` capped at ``max_width``; batch norm after
    every convolution, dropout between the two convolutions of each level; bilinear upsampling
    followed by a 1x1 convolution (no checkerboard artefacts) and skip concatenation."""

    def __init__(self, in_chans: int = 1, out_chans: int = 1, width: int = 16, depth: int = 3,
                 max_width: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        widths = [min(width * 2 ** i, max_width) for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([_double_conv(in_chans, widths[0], 0.0)] +
                                  [_double_conv(widths[i], widths[i + 1], dropout) for i in range(depth)])
        self.reduce = nn.ModuleList([nn.Conv2d(widths[i + 1], widths[i], 1) for i in range(depth)])
        self.up = nn.ModuleList([_double_conv(2 * widths[i], widths[i], dropout if i else 0.0) for i in range(depth)])
        self.out = nn.Conv2d(widths[0], out_chans, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.depth)):
            x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([skips.pop(), self.reduce[i](x)], dim=1))
        return self.out(x)


@register_model
def unet(in_chans: int = 1, out_chans: int = 1, width: int = 16, depth: int = 3, max_width: int = 256,
         dropout: float = 0.1) -> UNet:
    """U-Net for binary segmentation (logits); input sides divisible by 2**depth."""
    return UNet(in_chans, out_chans, width, depth, max_width, dropout)
