"""A small, honest stand-in for Kim et al. Table 5 on this machine: no VOC, no ImageNet, a 2-core CPU.

1. Generate a classification set of coloured-rectangle crops (4 colours + background, 32×32) and a VOC-layout
   detection set of the same rectangles (:mod:`lightning_skd.data.synthetic_detection`).
2. Train three ``timm:resnet10t`` ``ImageClassifier`` backbones on the crops, through the CLI: baseline, label
   smoothing 0.1, Self-KD (cache, α_T = 0.8); seed 0, 10 epochs, SGD lr 0.05, ×0.1 at epochs 6 and 8.
3. ``lightning-skd export-backbone`` each; fine-tune a Faster R-CNN (small FPN) from each with everything else
   equal (the ``configs/voc`` configs with size overrides); ``lightning-skd test``; ``lightning-skd detection-table``.

Run: ``python -m lightning_skd.tools.detection_demo [OUTPUT_DIR] [SEED ...]`` (default ``outputs/detection_demo``,
0). The backbones are trained once (kept in ``OUTPUT_DIR/backbones/``); each seed repeats the detection fine-tuning.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lightning_skd.cli import main as cli
from lightning_skd.data.synthetic_detection import write_synthetic_classification, write_synthetic_voc
from lightning_skd.tools.configs import shipped_config

CLASSES = ["red", "green", "blue"]
METHODS = {
    "baseline": [],
    "label_smoothing": ["--model.label_smoothing=0.1"],
    "selfkd": [
        "--trainer.callbacks+=lightning_skd.SelfKDCallback",
        "--trainer.callbacks.alpha_T=0.8",
        "--trainer.callbacks.mode=cache",
    ],
}
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu"]


def train_backbone(root: Path, crops: Path, backbone: Path, extra: list[str], epochs: int) -> None:
    """Train an ImageClassifier on the crops (seed 0) and export its backbone."""
    cli(
        [
            "fit",
            "--seed_everything=0",
            "--model=lightning_skd.models.ImageClassifier",
            "--model.backbone=timm:resnet10t",
            "--model.num_classes=5",
            "--model.log_figures=false",
            "--model.optimizer=torch.optim.SGD",
            "--model.optimizer.lr=0.05",
            "--model.optimizer.momentum=0.9",
            "--model.optimizer.weight_decay=0.0005",
            "--model.lr_scheduler=torch.optim.lr_scheduler.MultiStepLR",
            f"--model.lr_scheduler.milestones=[{epochs * 3 // 5}, {epochs * 4 // 5}]",
            "--data=lightning_skd.data.ImageFolderDataModule",
            f"--data.data_dir={crops}",
            "--data.image_size=32",
            "--data.batch_size=32",
            "--data.num_workers=0",
            f"--trainer.max_epochs={epochs}",
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={root}",
            *QUIET,
            *extra,
        ]
    )
    cli(["export-backbone", str(sorted(root.rglob("*.ckpt"))[-1]), str(backbone)])


def detector_args(method: str, backbone: Path, voc: Path, root: Path, seed: int, epochs: int, lr: float) -> list[str]:
    """The shipped config of ``method`` with the small-image, small-head overrides of the tests."""
    return [
        "--config",
        str(shipped_config(f"voc/faster_rcnn_{method}.yaml")),
        f"--seed_everything={seed}",
        f"--model.init_args.backbone_file={backbone}",
        f"--data.init_args.data_dir={voc}",
        "--data.init_args.train_sets=[2007/trainval]",
        f"--data.init_args.class_names=[{','.join(CLASSES)}]",
        f"--model.init_args.class_names=[{','.join(CLASSES)}]",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
        "--model.init_args.min_size=96",
        "--model.init_args.max_size=128",
        "--model.init_args.fpn=true",
        "--model.init_args.anchor_sizes=[16,32,64,128,256]",
        "--model.init_args.fpn_channels=64",
        "--model.init_args.representation_size=128",
        "--model.init_args.rcnn_options={rpn_batch_size_per_image: 64, box_batch_size_per_image: 64, "
        "rpn_pre_nms_top_n_train: 300, rpn_post_nms_top_n_train: 100, rpn_pre_nms_top_n_test: 300, "
        "rpn_post_nms_top_n_test: 100}",
        f"--model.init_args.optimizer.init_args.lr={lr}",
        f"--model.init_args.lr_scheduler.init_args.milestones=[{epochs // 2 + 1}]",
        "--trainer.gradient_clip_val=10",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={root}",
        *QUIET,
    ]


def run(out: Path, seed: int = 0, classifier_epochs: int = 10, detector_epochs: int = 6, lr: float = 0.01) -> None:
    """Backbones (once), then the three detection fine-tunings with ``seed``, and their table."""
    crops = write_synthetic_classification(out / "crops", class_names=["red", "green", "blue", "yellow"], seed=0)
    voc = write_synthetic_voc(out / "voc", {"trainval": 24, "test": 16}, class_names=CLASSES, seed=0).parents[1]
    tables = []
    for method, extra in METHODS.items():
        backbone = out / "backbones" / f"{method}.safetensors"
        if not backbone.is_file():
            train_backbone(out / "classifier" / method, crops, backbone, extra, classifier_epochs)
        root = out / "detector" / f"seed{seed}" / method
        start = time.perf_counter()
        args = detector_args(method, backbone, voc, root, seed, detector_epochs, lr)
        cli(["fit", *args])
        cli(["test", *args, f"--ckpt_path={next(root.rglob('last.ckpt'))}"])
        tables.append(f"{method}={next(root.rglob('test_detection_metrics.json'))}")
        print(f"{method}: detector fine-tune + test {time.perf_counter() - start:.0f} s")
    cli(["detection-table", *tables, "--out", str(out / f"table5_seed{seed}")])


if __name__ == "__main__":
    output = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/detection_demo")
    for seed in [int(s) for s in sys.argv[2:]] or [0]:
        run(output, seed)
