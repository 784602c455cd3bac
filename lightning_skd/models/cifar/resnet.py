"""CIFAR ResNet-50 / ResNet-101 (bottleneck): torchvision's ResNets with a 3×3 stride-1 stem and no max-pool.

This is the CIFAR variant used by the PS-KD and CutMix code bases (stages of 64-128-256-512 bottleneck widths,
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
