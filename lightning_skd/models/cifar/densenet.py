"""DenseNet-BC (depth 100, growth rate k = 12) for CIFAR, Huang et al. 2017, from ``pytorchcv``."""

from __future__ import annotations

from torch import nn


def densenet_bc_100_12(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """DenseNet-BC-100 (k = 12): bottleneck layers, compression 0.5, three dense blocks; about 0.8M parameters."""
    from pytorchcv.models.densenet_cifar import get_densenet_cifar

    return get_densenet_cifar(num_classes, blocks=100, growth_rate=12, bottleneck=True, in_channels=in_channels)
