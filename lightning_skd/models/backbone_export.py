"""Export the ResNet backbone of an ``ImageClassifier`` checkpoint as a plain safetensors file, and load it back.

The file holds the backbone's tensors (the classifier head ``fc.*`` left out) and string metadata: the
architecture (``"timm:resnet152"``), its build options (``in_channels``, ``cifar_stem``), the training method the
checkpoint came from (``baseline`` / ``label_smoothing`` / ``selfkd``), and the source checkpoint's path, SHA-256,
epoch and step. safetensors files hold no pickled objects, so loading one runs no code.

Command line: ``lightning-skd export-backbone CHECKPOINT OUTPUT.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from lightning_skd.models.backbones import build_backbone

FORMAT = "lightning_skd.backbone/1"
HEAD_PREFIXES = ("fc.",)  # the classifier head of timm / torchvision ResNets
RESNET_LAYERS = ("conv1", "layer1", "layer2", "layer3", "layer4")


@dataclass
class BackboneInfo:
    """Metadata stored with exported backbone weights (all values become strings in the file)."""

    architecture: str  # "timm:<name>" or "torchvision:<name>"
    in_channels: int = 3
    cifar_stem: bool = False
    method: str = "unknown"  # "baseline", "label_smoothing" or "selfkd"
    source_checkpoint: str = ""
    source_sha256: str = ""
    source_epoch: int = -1
    source_global_step: int = -1

    def to_metadata(self) -> dict[str, str]:
        """String metadata for safetensors."""
        return {"format": FORMAT, **{key: json.dumps(value) for key, value in asdict(self).items()}}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str] | None, path: str | Path) -> BackboneInfo:
        """Parse what :meth:`to_metadata` wrote; a file without it is refused, naming ``path``."""
        if not metadata or metadata.get("format") != FORMAT:
            raise ValueError(
                f"{str(path)!r} is not a backbone file written by `lightning-skd export-backbone` "
                f"(metadata format {None if not metadata else metadata.get('format')!r}, expected {FORMAT!r})"
            )
        fields = cls.__dataclass_fields__
        return cls(**{key: json.loads(value) for key, value in metadata.items() if key in fields})


def check_resnet(model: nn.Module, architecture: str) -> None:
    """Raise a ``ValueError`` unless ``model`` has the ResNet layout (``conv1``, ``layer1`` .. ``layer4``)."""
    missing = [name for name in RESNET_LAYERS if not isinstance(getattr(model, name, None), nn.Module)]
    if missing:
        raise ValueError(
            f"Backbone {architecture!r} is not a ResNet-family network: it lacks {missing}. Export and detection "
            "support timm / torchvision ResNets (resnet*, resnext*, wide_resnet*, resnet*d/t variants)."
        )


def backbone_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The network's tensors without the classifier head, contiguous and on the CPU."""
    return {
        key: value.detach().cpu().contiguous()
        for key, value in model.state_dict().items()
        if not key.startswith(HEAD_PREFIXES)
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _training_method(checkpoint: dict) -> str:
    if any(str(key).startswith("SelfKDCallback") for key in checkpoint.get("callbacks", {})):
        return "selfkd"
    if float(checkpoint["hyper_parameters"].get("label_smoothing", 0.0)) > 0:
        return "label_smoothing"
    return "baseline"


def export_backbone(checkpoint_path: str | Path, output_path: str | Path) -> BackboneInfo:
    """Write the backbone of an ``ImageClassifier`` Lightning checkpoint to a safetensors file.

    Args:
        checkpoint_path: A ``.ckpt`` of :class:`~lightning_skd.models.ImageClassifier` with a timm / torchvision
            ResNet backbone.
        output_path: The ``.safetensors`` file to write (parent folders are created).

    Returns:
        The metadata written.

    Raises:
        FileNotFoundError: No checkpoint at ``checkpoint_path``.
        ValueError: Not an ``ImageClassifier`` checkpoint, or its backbone is not a ResNet.

    """
    checkpoint_path, output_path = Path(checkpoint_path), Path(output_path)
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"export_backbone: no checkpoint file at {str(checkpoint_path)!r}")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if "backbone" not in hparams or "state_dict" not in checkpoint:
        raise ValueError(
            f"export_backbone: {str(checkpoint_path)!r} is not an ImageClassifier checkpoint "
            "(expected `state_dict` and `hyper_parameters.backbone`)"
        )
    architecture = hparams["backbone"]
    if not architecture.startswith(("timm:", "torchvision:")):
        raise ValueError(
            f"export_backbone: backbone {architecture!r} of {str(checkpoint_path)!r} is not a timm / torchvision "
            "ResNet; detection needs a ResNet-family backbone"
        )
    info = BackboneInfo(
        architecture=architecture,
        in_channels=int(hparams.get("in_channels", 3)),
        cifar_stem=bool(hparams.get("cifar_stem", False)),
        method=_training_method(checkpoint),
        source_checkpoint=str(checkpoint_path.resolve()),
        source_sha256=_sha256(checkpoint_path),
        source_epoch=int(checkpoint.get("epoch", -1)),
        source_global_step=int(checkpoint.get("global_step", -1)),
    )
    model = build_backbone(
        architecture, int(hparams.get("num_classes", 2)), info.in_channels, cifar_stem=info.cifar_stem
    )
    check_resnet(model, architecture)
    prefix = "net."
    model.load_state_dict(
        {key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(backbone_state_dict(model), str(output_path), metadata=info.to_metadata())
    return info


def read_backbone_info(path: str | Path) -> BackboneInfo:
    """The metadata of an exported backbone file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no backbone file at {str(path)!r}; write one with `lightning-skd export-backbone`")
    with safe_open(str(path), framework="pt") as handle:
        return BackboneInfo.from_metadata(handle.metadata(), path)


def load_backbone(path: str | Path, architecture: str | None = None) -> tuple[nn.Module, BackboneInfo]:
    """Build the ResNet named in an exported file and load its weights (the head ``fc`` keeps random weights).

    Args:
        path: A file written by :func:`export_backbone`.
        architecture: If given, the architecture the caller expects; a file of another one is refused.

    Returns:
        The network (a full classifier, head included) and the file's metadata.

    """
    from safetensors.torch import load_file

    info = read_backbone_info(path)
    if architecture is not None and architecture != info.architecture:
        raise ValueError(
            f"backbone file {str(path)!r} holds a {info.architecture!r} backbone, but {architecture!r} was asked for"
        )
    model = build_backbone(info.architecture, num_classes=2, in_channels=info.in_channels, cifar_stem=info.cifar_stem)
    check_resnet(model, info.architecture)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    missing = [key for key in missing if not key.startswith(HEAD_PREFIXES)]
    if missing or unexpected:
        raise ValueError(
            f"backbone file {str(path)!r} does not fit {info.architecture!r}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model, info
