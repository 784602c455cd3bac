"""Time one Faster R-CNN fine-tuning step (forward + backward + SGD step) of the Detector on this CPU.

Run: ``.venv/bin/python benchmarks/bench_detector.py [--repeats N] [--skip-large]``.

Measured side by side in one run, batch and image size as stated, random weights (speed does not depend on them):

* ``small``: the tests' detector: ``timm:resnet10t``, 64-channel FPN, 128-wide box head, 2 images of 96×128
  (resized to min 96 / max 128), 64 RPN and 64 RoI samples per image;
* ``resnet50-C4`` and ``resnet152-C4``: the paper configuration (``configs/voc/faster_rcnn_*.yaml``: C4 layout,
  trainable_layers 3, frozen BN, RoI 128 / RPN 256 samples, batch 1) on one 375×500 image resized to 600×800, as a
  typical VOC image; ResNet-152 is the paper's backbone.

Every timing is the median of ``--repeats`` steps after one warm-up step, on ``torch.get_num_threads()`` threads.
The VOC07+12 epoch estimate multiplies by 16,551 images (batch 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from lightning_skd.models import Detector, build_backbone
from lightning_skd.models.backbone_export import BackboneInfo, backbone_state_dict

PAPER = {
    "fpn": False,
    "anchor_sizes": [128, 256, 512],
    "rcnn_options": {
        "rpn_batch_size_per_image": 256,
        "box_batch_size_per_image": 128,
        "rpn_pre_nms_top_n_train": 12000,
        "rpn_post_nms_top_n_train": 2000,
    },
}
SMALL = {
    "fpn": True,
    "min_size": 96,
    "max_size": 128,
    "anchor_sizes": [16, 32, 64, 128, 256],
    "fpn_channels": 64,
    "representation_size": 128,
    "rcnn_options": {
        "rpn_batch_size_per_image": 64,
        "box_batch_size_per_image": 64,
        "rpn_pre_nms_top_n_train": 300,
        "rpn_post_nms_top_n_train": 100,
    },
}


def backbone_file(folder: Path, architecture: str) -> Path:
    """An export-format file of a randomly initialised ResNet."""
    path = folder / f"{architecture.replace(':', '_')}.safetensors"
    torch.manual_seed(0)
    net = build_backbone(architecture, num_classes=10)
    save_file(backbone_state_dict(net), str(path), metadata=BackboneInfo(architecture).to_metadata())
    return path


def batch(n: int, height: int, width: int, n_classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, height, width, generator=g) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand(3, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
        wh = (0.1 + 0.3 * torch.rand(3, 2, generator=g)) * torch.tensor([width, height])
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, n_classes + 1, (3,))})
    return images, targets


def time_steps(detector: Detector, images, targets, repeats: int) -> float:
    model = detector.model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    times = []
    for step in range(repeats + 1):
        start = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step is a warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true", help="only the small detector")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        small = Detector(str(backbone_file(Path(tmp), "timm:resnet10t")), class_names=["a", "b", "c"], **SMALL)
        results["small (resnet10t FPN, 2 x 96x128)"] = time_steps(small, *batch(2, 96, 128, 3), args.repeats)
        if not args.skip_large:
            for arch in ("torchvision:resnet50", "torchvision:resnet152"):
                detector = Detector(str(backbone_file(Path(tmp), arch)), **PAPER)
                name = f"{arch.split(':')[1]}-C4 (paper config, 1 x 600x800)"
                results[name] = time_steps(detector, *batch(1, 375, 500, 20), args.repeats)
    base = next(iter(results.values()))
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other jobs slow every row)")
    print("| detector | s / step | x small | VOC07+12 epoch (16,551 steps of batch 1) |")
    print("| --- | --- | --- | --- |")
    for name, seconds in results.items():
        epoch = f"{seconds * 16551 / 3600:.0f} h" if "paper" in name else "-"
        print(f"| {name} | {seconds:.3f} | {seconds / base:.1f} | {epoch} |")


if __name__ == "__main__":
    main()
