"""Image backbones by name: ``"timm:<name>"``, ``"torchvision:<name>"``, ``"cifar:<name>"``, ``"lightning_skd:<name>"``.

``"cifar:<name>"`` are the 32×32 networks of Kim et al.'s Table 1 (:mod:`lightning_skd.models.cifar`).

Every builder returns a network mapping ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits. Weights
are random unless ``pretrained=True``, which downloads them through timm / torchvision (needs network access).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


class SmallCNN(nn.Module):
    """A two-block CNN for tiny images (8×8 digits, 28×28 Fashion-MNIST), fast on a CPU.

    Example:
        >>> import torch
        >>> SmallCNN(in_channels=1, num_classes=10)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])

    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.features = nn.Sequential(
            block(in_channels, width),
            block(width, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, num_classes))

    def forward(self, images):  # (B, C, H, W) -> (B, num_classes)
        """Logits of a batch of images."""
        return self.head(self.features(images))


def _timm(name: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)


def _torchvision(name: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    import torchvision

    weights = "DEFAULT" if pretrained else None
    if pretrained:  # pretrained heads have 1000 classes: load, then replace the head
        model = torchvision.models.get_model(name, weights=weights)
        _replace_classifier_head(model, num_classes)
    else:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if in_channels != 3:
        conv = getattr(model, "conv1", None)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"`in_channels`={in_channels} needs a backbone with a `conv1` stem; {name!r} has none.")
        model.conv1 = _conv_like(conv, in_channels=in_channels)
    return model


def _local(name: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    models = {"small_cnn": SmallCNN}
    if name not in models:
        raise ValueError(f"Unknown lightning_skd backbone {name!r}; available: {sorted(models)}.")
    if pretrained:
        raise ValueError(f"lightning_skd:{name} has no pretrained weights; set `pretrained=False`.")
    return models[name](in_channels=in_channels, num_classes=num_classes)


def _cifar(name: str, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    from lightning_skd.models.cifar import CIFAR_MODELS

    if name not in CIFAR_MODELS:
        raise ValueError(f"Unknown CIFAR backbone {name!r}; available: {sorted(CIFAR_MODELS)}.")
    if pretrained:
        raise ValueError(f"cifar:{name} has no pretrained weights; set `pretrained=False`.")
    return CIFAR_MODELS[name](num_classes=num_classes, in_channels=in_channels)


BACKBONE_SOURCES: dict[str, Callable[[str, int, int, bool], nn.Module]] = {
    "timm": _timm,
    "torchvision": _torchvision,
    "cifar": _cifar,
    "lightning_skd": _local,
}


def build_backbone(
    spec: str, num_classes: int, in_channels: int = 3, pretrained: bool = False, cifar_stem: bool = False
) -> nn.Module:
    """Build the classifier network named by ``spec`` (``"source:name"``).

    Args:
        spec: ``"timm:resnet18"``, ``"torchvision:resnet50"``, ``"cifar:pyramidnet200_240"``,
            ``"lightning_skd:small_cnn"``, ...
        num_classes: Output classes.
        in_channels: Image channels.
        pretrained: Download pretrained weights (timm / torchvision only; needs network access).
        cifar_stem: Replace a ResNet stem (7×7 stride-2 conv + max-pool) by a 3×3 stride-1 conv and no pooling, the
            usual stem for 32×32 inputs. Needs a backbone with ``conv1`` and ``maxpool`` attributes.

    Returns:
        The network.

    Example:
        >>> build_backbone("lightning_skd:small_cnn", num_classes=10, in_channels=1).head[-1].out_features
        10

    """
    source, sep, name = spec.partition(":")
    if not sep or source not in BACKBONE_SOURCES or not name:
        raise ValueError(f"`backbone` must look like one of {[f'{s}:<name>' for s in BACKBONE_SOURCES]}, got {spec!r}.")
    model = BACKBONE_SOURCES[source](name, num_classes, in_channels, pretrained)
    if cifar_stem:
        conv, pool = getattr(model, "conv1", None), getattr(model, "maxpool", None)
        if not isinstance(conv, nn.Conv2d) or pool is None:
            raise ValueError(f"`cifar_stem=True` needs a ResNet-style backbone with `conv1` and `maxpool`; {spec!r}.")
        model.conv1 = _conv_like(conv, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()
    return model


def _conv_like(conv: nn.Conv2d, **overrides) -> nn.Conv2d:
    args = {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "bias": conv.bias is not None,
    }
    return nn.Conv2d(**{**args, **overrides})


def _replace_classifier_head(model: nn.Module, num_classes: int) -> None:
    for attribute in ("fc", "head", "classifier"):
        layer = getattr(model, attribute, None)
        if isinstance(layer, nn.Linear):
            setattr(model, attribute, nn.Linear(layer.in_features, num_classes))
            return
    raise ValueError("Could not find a linear classifier head (`fc`, `head` or `classifier`) to resize.")
