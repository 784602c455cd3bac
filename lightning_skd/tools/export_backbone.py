"""``lightning-skd export-backbone``: the command around :func:`lightning_skd.models.export_backbone`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lightning_skd.models.backbone_export import export_backbone


def main(args: Sequence[str] | None = None) -> None:
    """``lightning-skd export-backbone CHECKPOINT OUTPUT``."""
    parser = argparse.ArgumentParser(
        prog="lightning-skd export-backbone",
        description="Write the ResNet backbone of an ImageClassifier checkpoint to a safetensors file.",
    )
    parser.add_argument("checkpoint", help="Lightning checkpoint of lightning_skd.models.ImageClassifier")
    parser.add_argument("output", help="the .safetensors file to write")
    parsed = parser.parse_args(args)
    try:
        info = export_backbone(parsed.checkpoint, parsed.output)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"lightning-skd export-backbone: error: {err}\n")
    print(f"wrote {parsed.output}: {info.architecture} ({info.method}) from {info.source_checkpoint}")
