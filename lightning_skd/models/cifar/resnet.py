"""CIFAR ResNets: ResNet-50 / ResNet-101 (bottleneck; torchvision with a 3×3 stride-1 stem, no max-pool), ResNet-20.

ResNet-50/101 are the CIFAR variant used by the PS-KD and CutMix code bases (stages of 64-128-256-512 bottleneck widths,
[3, 4, 6, 3] / [3, 4, 23, 3] blocks, global average pooling, one linear layer).
"""

from __future__ import annotations

import torchvision
from torch import nn


def _cifar_resnet(name: str, num_classes: int, in_channels: int) -> nn.Module:
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)  # 32×32 stays 32×32
    model.maxpool = nn.Identity()
    return model


def resnet50(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-50."""
    return _cifar_resnet("resnet50", num_classes, in_channels)


def resnet101(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-101 (same stem as :func:`resnet50`)."""
    return _cifar_resnet("resnet101", num_classes, in_channels)


def resnet20(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-20 (He et al. 2016, Sec. 4.2: 16-32-64 channels, 3 × 3 basic blocks; about 0.27M parameters).

    ``pytorchcv``'s network with its fixed 8×8 average pooling replaced by global average pooling (identical at
    32×32), so it also runs on 28×28 images (Fashion-MNIST).

    Example:
        >>> import torch
        >>> resnet20(num_classes=10, in_channels=1)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])

    """
    from pytorchcv.models.resnet_cifar import get_resnet_cifar

    model = get_resnet_cifar(num_classes, blocks=20, bottleneck=False, in_channels=in_channels)
    model.features.final_pool = nn.AdaptiveAvgPool2d(1)
    return model
