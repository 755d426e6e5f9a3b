"""Image classifiers: the workshop's DBRNet and CancerCNN, a small ResNet for 28-64 px inputs,
and torchvision backbones. Inputs are (B, C, H, W) floats; outputs (B, num_classes) logits.

Every model has ``head`` (the last layer, replaced for a new task) and ``backbone_parameters()``
(everything else), which transfer learning freezes and trains at a lower learning rate.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from ._registry import register_model


__all__ = [
    "DBRNet", "CancerCNN", "SmallResNet", "TorchvisionClassifier", "dbrnet", "cancer_cnn", "resnet_small",
    "TORCHVISION_BACKBONES",
]


class _Classifier(nn.Module):
    """``features`` (B, C, H, W) -> (B, D) and ``head`` (B, D) -> (B, num_classes)."""

    features: nn.Module
    head: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.features.parameters()


class DBRNet(_Classifier):
    """The workshop's LeNet-like retinopathy net for 224 x 224 inputs:
    conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 120 -> 84 -> num_classes."""

    def __init__(self, num_classes: int = 5, in_chans: int = 3, img_size: int = 224) -> None:
        super().__init__()
        side = ((img_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"img_size {img_size} is too small for DBRNet")
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        )
        self.head = nn.Linear(84, num_classes)


class CancerCNN(_Classifier):
    """The workshop's IDC patch net for 50 x 50 inputs: three 9x9 conv blocks with tanh and
    max-pooling 2, 5, 5, then 32 hidden units."""

    def __init__(self, num_classes: int = 2, in_chans: int = 3, img_size: int = 50) -> None:
        super().__init__()
        side = img_size // 2 // 5 // 5
        if side < 1:
            raise ValueError(f"img_size {img_size} is too small for CancerCNN (needs >= 50)")
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 32, 9, padding=4), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 9, padding=4), nn.Tanh(), nn.MaxPool2d(5),
            nn.Conv2d(64, 128, 9, padding=4), nn.Tanh(), nn.MaxPool2d(5),
            nn.Flatten(), nn.Linear(128 * side * side, 32), nn.Tanh(),
        )
        self.head = nn.Linear(32, num_classes)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        # ResNet-D shortcut (average-pool, then a 1x1 convolution at stride 1): no strided 1x1
        # convolution, which keeps channels_last usable on the CPU (see engine.trainer)
        self.skip = (nn.Sequential(nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False),
                                   nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


class SmallResNet(_Classifier):
    """A CIFAR-style residual net for small images (28-64 px): a 3x3 stem and three stages of
    ``blocks`` basic blocks (widths w, 2w, 4w; stride 2 between stages, ResNet-D shortcuts),
    global average pool."""

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 32, blocks: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        cin = width
        for stage, w in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(_Block(cin, w, 2 if (b == 0 and stage > 0) else 1))
                cin = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)


class TorchvisionClassifier(_Classifier):
    """A torchvision backbone (random init) with its classifier replaced by ``head``."""

    def __init__(self, arch: str, num_classes: int, in_chans: int = 3) -> None:
        super().__init__()
        import torchvision.models as tvm

        net = getattr(tvm, arch)(weights=None)
        if arch.startswith("resnet"):
            dim, net.fc = net.fc.in_features, nn.Identity()
            if in_chans != 3:
                net.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        elif arch.startswith("efficientnet"):
            dim, net.classifier[-1] = net.classifier[-1].in_features, nn.Identity()
            if in_chans != 3:
                old = net.features[0][0]
                net.features[0][0] = nn.Conv2d(in_chans, old.out_channels, 3, 2, 1, bias=False)
        elif arch.startswith("convnext"):
            dim, net.classifier[-1] = net.classifier[-1].in_features, nn.Identity()
            if in_chans != 3:
                old = net.features[0][0]
                net.features[0][0] = nn.Conv2d(in_chans, old.out_channels, 4, 4)
        else:  # pragma: no cover - registry only lists the families above
            raise ValueError(f"unsupported torchvision architecture {arch}")
        self.features = net
        self.head = nn.Linear(dim, num_classes)


@register_model
def dbrnet(num_classes: int = 5, in_chans: int = 3, img_size: int = 224) -> DBRNet:
    """The workshop's diabetic-retinopathy LeNet (224 x 224)."""
    return DBRNet(num_classes, in_chans, img_size)


@register_model
def cancer_cnn(num_classes: int = 2, in_chans: int = 3, img_size: int = 50) -> CancerCNN:
    """The workshop's IDC patch CNN (50 x 50)."""
    return CancerCNN(num_classes, in_chans, img_size)


@register_model
def resnet_small(num_classes: int = 2, in_chans: int = 3, width: int = 32, blocks: int = 2,
                 dropout: float = 0.0) -> SmallResNet:
    """Residual net for 28-64 px images (e.g. MedMNIST)."""
    return SmallResNet(num_classes, in_chans, width, blocks, dropout)


def _tv(arch: str):
    def make(num_classes: int = 2, in_chans: int = 3) -> TorchvisionClassifier:
        return TorchvisionClassifier(arch, num_classes, in_chans)

    make.__name__ = arch
    make.__doc__ = f"torchvision {arch} (random init; pretrained weights from a local file)"
    return make


#: torchvision backbones in the registry (each has ImageNet weights in torchvision)
TORCHVISION_BACKBONES = ("resnet18", "resnet50", "efficientnet_b0", "convnext_tiny")
for _arch in TORCHVISION_BACKBONES:
    register_model(_tv(_arch))
