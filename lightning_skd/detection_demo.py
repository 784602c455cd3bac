"""A small, honest stand-in for Kim et al. Table 5 on this machine: no VOC, no ImageNet, a 2-core CPU.

1. Generate a classification set of coloured-rectangle crops (4 colours + background, 32×32) and a VOC-layout
   detection set of the same rectangles (:mod:`lightning_skd.data.synthetic_detection`).
2. Train three ``timm:resnet10t`` ``ImageClassifier`` backbones on the crops, through the CLI: baseline, label
   smoothing 0.1, Self-KD (cache, α_T = 0.8).
3. ``lightning-skd export-backbone`` each; fine-tune a Faster R-CNN (small FPN) from each with everything else
   equal; ``lightning-skd test``; ``lightning-skd detection-table``.

Run: ``python -m lightning_skd.detection_demo [OUTPUT_DIR] [SEED]`` (default ``outputs/detection_demo``, 0).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lightning_skd.cli import main as cli
from lightning_skd.data.synthetic_detection import write_synthetic_classification, write_synthetic_voc

CLASSES = ["red", "green", "blue"]
METHODS = {
    "baseline": [],
    "label_smoothing": ["--model.init_args.label_smoothing=0.1"],
    "selfkd": [
        "--trainer.callbacks+=lightning_skd.SelfKDCallback",
        "--trainer.callbacks.alpha_T=0.8",
        "--trainer.callbacks.mode=cache",
    ],
}
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu"]


def run(out: Path, seed: int = 0, classifier_epochs: int = 8, detector_epochs: int = 6) -> None:
    """Run the whole comparison into ``out`` and print the table."""
    crops = write_synthetic_classification(out / "crops", class_names=["red", "green", "blue", "yellow"], seed=seed)
    voc = write_synthetic_voc(out / "voc", {"trainval": 24, "test": 16}, class_names=CLASSES, seed=seed).parents[1]
    tables = []
    for method, extra in METHODS.items():
        root = out / "classifier" / method
        start = time.perf_counter()
        cli(
            [
                "fit",
                f"--seed_everything={seed}",
                "--model=lightning_skd.models.ImageClassifier",
                "--model.backbone=timm:resnet10t",
                "--model.num_classes=5",
                "--model.log_figures=false",
                "--model.optimizer=torch.optim.SGD",
                "--model.optimizer.lr=0.05",
                "--model.optimizer.momentum=0.9",
                "--model.optimizer.weight_decay=0.0005",
                "--data=lightning_skd.data.ImageFolderDataModule",
                f"--data.data_dir={crops}",
                "--data.image_size=32",
                "--data.batch_size=32",
                "--data.num_workers=0",
                f"--trainer.max_epochs={classifier_epochs}",
                f"--trainer.default_root_dir={root}",
                "--trainer.logger=CSVLogger",
                f"--trainer.logger.save_dir={root}",
                *QUIET,
                *extra,
            ]
        )
        checkpoint = sorted(root.rglob("*.ckpt"))[-1]
        backbone = out / "backbones" / f"{method}.safetensors"
        cli(["export-backbone", str(checkpoint), str(backbone)])
        detector_root = out / "detector" / method
        args = [
            "--config",
            str(Path(__file__).parents[1] / "configs" / "voc" / f"faster_rcnn_{method}.yaml"),
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
            "--model.init_args.optimizer.init_args.lr=0.02",
            f"--model.init_args.lr_scheduler.init_args.milestones=[{detector_epochs // 2 + 1}]",
            f"--trainer.max_epochs={detector_epochs}",
            f"--trainer.default_root_dir={detector_root}",
            "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={detector_root}",
            *QUIET,
        ]
        cli(["fit", *args])
        cli(["test", *args, f"--ckpt_path={next(detector_root.rglob('last.ckpt'))}"])
        tables.append(f"{method}={next(detector_root.rglob('test_detection_metrics.json'))}")
        print(f"{method}: {time.perf_counter() - start:.0f} s")
    cli(["detection-table", *tables, "--out", str(out / "table5")])


if __name__ == "__main__":
    run(
        Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/detection_demo"),
        int(sys.argv[2]) if len(sys.argv) > 2 else 0,
    )
