"""The Detector end to end through the CLI under 2-process DDP (gloo): fit, test, and the same checkpoint's
single-process test give the same VOC07 mAP."""

import json
from pathlib import Path

import pytest

from lightning_skd.cli import main
from tests.helpers.detection import FPN_ARGS, SMALL_DETECTOR_ARGS, exported_backbone, generated_voc
from tests.helpers.multiprocess import QUIET_ARGS, run_cli

CONFIG = Path(__file__).parents[2] / "configs" / "voc" / "faster_rcnn_selfkd.yaml"


def _results(folder: Path) -> dict:
    (path,) = folder.rglob("test_detection_metrics.json")
    return json.loads(path.read_text())


@pytest.mark.usefixtures("one_thread")
def test_detector_ddp_fit_and_test_match_single_process(tmp_path, monkeypatch):
    backbone = exported_backbone(tmp_path)
    # 7 test images: the ranks evaluate 4 and 3 (unrepeated sampler), in batches of 2.
    voc = generated_voc(tmp_path / "voc", trainval=8, test=7, seed=1)
    common = [
        "--config",
        str(CONFIG),
        f"--model.init_args.backbone_file={backbone}",
        f"--data.init_args.data_dir={voc}",
        *SMALL_DETECTOR_ARGS,
        *FPN_ARGS,
        "--model.init_args.box_score_thresh=0.0",
        "--model.init_args.optimizer.init_args.lr=0.02",
        "--data.init_args.batch_size=2",
        "--data.init_args.eval_batch_size=2",
        "--trainer.max_epochs=3",
        "--trainer.logger=CSVLogger",
    ]
    ddp_root, single_root = tmp_path / "ddp", tmp_path / "single"
    run_cli(
        "fit",
        *common,
        f"--trainer.default_root_dir={ddp_root}",
        f"--trainer.logger.save_dir={ddp_root}",
        cwd=tmp_path,
        ddp=True,
        timeout=240,
    )
    (checkpoint,) = ddp_root.rglob("last.ckpt")
    run_cli(
        "test",
        *common,
        f"--trainer.default_root_dir={ddp_root / 'test'}",
        f"--trainer.logger.save_dir={ddp_root / 'test'}",
        f"--ckpt_path={checkpoint}",
        cwd=tmp_path,
        ddp=True,
        timeout=240,
    )
    # the single-process reference in this process (the same CLI entry point; no second Python to start)
    monkeypatch.chdir(tmp_path)
    main(
        [
            "test",
            *common,
            *QUIET_ARGS,
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
            f"--trainer.default_root_dir={single_root}",
            f"--trainer.logger.save_dir={single_root}",
            f"--ckpt_path={checkpoint}",
        ]
    )
    ddp, single = _results(ddp_root / "test"), _results(single_root)
    assert single["voc07_map"] > 0.0  # a non-trivial value to compare
    assert ddp["voc07_map"] == single["voc07_map"]
    assert ddp["voc07_ap"] == single["voc07_ap"]
    assert ddp["coco_map_50"] == pytest.approx(single["coco_map_50"], abs=1e-6)  # torchmetrics gathers the states
    assert ddp["coco_map"] == pytest.approx(single["coco_map"], abs=1e-6)
