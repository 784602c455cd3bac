"""CIFAR (32×32) networks of Kim et al.'s Table 1, selectable as ``"cifar:<name>"`` backbones.

One module per architecture family. Where a maintained library has the exact architecture (``pytorchcv``:
DenseNet-BC, ResNeXt-29, PyramidNet) it is used as is; only what no library has is written here (PreAct ResNet-18 and
ShakeDrop for PyramidNet). The CIFAR ResNet-50/101 are torchvision's ResNets with the usual CIFAR stem.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lightning_skd.models.cifar.densenet import densenet_bc_100_12
from lightning_skd.models.cifar.preact_resnet import PreActResNet, preact_resnet18
from lightning_skd.models.cifar.pyramidnet import pyramidnet200_240, pyramidnet200_240_shakedrop
from lightning_skd.models.cifar.resnet import resnet20, resnet50, resnet101
from lightning_skd.models.cifar.resnext import resnext29_8x64d

CIFAR_MODELS: dict[str, Callable[..., nn.Module]] = {
    "preact_resnet18": preact_resnet18,
    "resnet20": resnet20,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "densenet_bc_100_12": densenet_bc_100_12,
    "resnext29_8x64d": resnext29_8x64d,
    "pyramidnet200_240": pyramidnet200_240,
    "pyramidnet200_240_shakedrop": pyramidnet200_240_shakedrop,
}

__all__ = [
    "CIFAR_MODELS",
    "PreActResNet",
    "densenet_bc_100_12",
    "preact_resnet18",
    "pyramidnet200_240",
    "pyramidnet200_240_shakedrop",
    "resnet20",
    "resnet50",
    "resnet101",
    "resnext29_8x64d",
]
