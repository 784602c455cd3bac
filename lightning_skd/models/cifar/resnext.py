"""ResNeXt-29 (cardinality 8, bottleneck width 64d) for CIFAR, Xie et al. 2017, from ``pytorchcv``."""

from __future__ import annotations

from torch import nn


def resnext29_8x64d(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """ResNeXt-29 8×64d: three stages of three blocks (output widths 256-512-1024); about 34.4M parameters."""
    from pytorchcv.models.resnext_cifar import get_resnext_cifar

    return get_resnext_cifar(num_classes, blocks=29, cardinality=8, bottleneck_width=64, in_channels=in_channels)
