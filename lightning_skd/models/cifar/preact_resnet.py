"""PreAct ResNet-18 for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual Networks").

No maintained library ships the CIFAR variant (``pytorchcv``'s CIFAR PreResNets are the 16-32-64 channel family,
its ``preresnet18`` has an ImageNet stem), so it is written here. The layout is the one of the mixup / CutMix /
PS-KD code bases: a 3×3 stride-1 stem conv, four stages of two pre-activation basic blocks (64, 128, 256, 512
channels; strides 1, 2, 2, 2), a 1×1 projection shortcut on the pre-activated input where the shape changes, global
average pooling and one linear layer (no BN-ReLU after the last block, as in those code bases).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-conv3×3 with an identity (or 1×1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, in_planes, H, W) -> (B, planes, H / stride, W / stride)
        """Residual block output."""
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet with basic blocks for 32×32 inputs.

    Args:
        num_blocks: Blocks per stage, e.g. ``(2, 2, 2, 2)`` for PreAct ResNet-18.
        num_classes: Output classes.
        in_channels: Image channels.

    """

    def __init__(self, num_blocks: tuple[int, ...], num_classes: int = 100, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        layers, in_planes = [], 64
        for stage, blocks in enumerate(num_blocks):
            planes = 64 * 2**stage
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(PreActBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, images: Tensor) -> Tensor:  # (B, C, 32, 32) -> (B, num_classes)
        """Logits of a batch of images."""
        features = self.layers(self.conv1(images))  # (B, 512, 4, 4)
        return self.linear(F.adaptive_avg_pool2d(features, 1).flatten(1))


def preact_resnet18(num_classes: int = 100, in_channels: int = 3) -> PreActResNet:
    """PreAct ResNet-18.

    Example:
        >>> import torch
        >>> preact_resnet18(num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])

    """
    return PreActResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels)
