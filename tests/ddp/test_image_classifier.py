"""ImageClassifier end to end under DDP (2 CPU processes, gloo), as users launch it: the shipped digits configs
through the ``lightning-skd`` CLI with figures on (the default), compared with single-process evaluations.

The digits splits have 359 validation and 359 test images: odd, so a padding sampler would evaluate one image twice.
"""

import pytest
import torch

from lightning_skd.cli import SelfKDCLI
from tests.helpers.ddp import (
    CONFIGS,
    assert_metrics_equal,
    cli_run,
    last_values,
    load_predictions,
    logged,
    single_process,
)

SELFKD = CONFIGS / "digits" / "selfkd.yaml"
EPOCHS = 3


@pytest.fixture(scope="module")
def selfkd_runs(tmp_path_factory):
    """fit (DDP, 3 epochs), then test and predict (DDP) of its checkpoint."""
    root = tmp_path_factory.mktemp("ddp_selfkd")
    fit = cli_run("fit", SELFKD, root, "fit", f"--trainer.max_epochs={EPOCHS}")
    (checkpoint,) = fit.rglob("*.ckpt")
    test = cli_run("test", SELFKD, root, "test", f"--ckpt_path={checkpoint}")
    predict = cli_run("predict", SELFKD, root, "predict", f"--ckpt_path={checkpoint}")
    return {"root": root, "fit": fit, "test": test, "predict": predict, "checkpoint": checkpoint}


def test_image_classifier_ddp_teacher_covers_every_sample_from_epoch_two(selfkd_runs):
    values = logged(selfkd_runs["fit"])
    coverage = values["skd/teacher_coverage"]
    assert len(coverage) == EPOCHS
    assert coverage[0] == 0.0  # epoch 1 trains on hard labels
    # 1079 samples on 2 ranks: DistributedSampler repeats one, whose second visit may find its row already rewritten
    assert all(c >= 1 - 1 / 1080 for c in coverage[1:]), coverage
    assert values["skd/alpha_scheduled"] == pytest.approx([0.8 * t / EPOCHS for t in range(1, EPOCHS + 1)])
    # the alpha applied: the scheduled one on the rows that had a teacher
    assert values["skd/alpha"] == pytest.approx(
        [0.8 * t / EPOCHS * c for t, c in zip(range(1, EPOCHS + 1), coverage, strict=True)]
    )
    # the teacher of epoch t is what the model predicted in epoch t-1, on whichever rank: its accuracy is that epoch's
    # training accuracy (up to the repeated sample, counted twice in the training error)
    previous_accuracy = [1 - err for err in values["train/top1_err"][:-1]]
    assert values["skd/teacher_acc"] == pytest.approx(previous_accuracy, abs=2 / 1079)


def test_image_classifier_ddp_val_metrics_equal_single_process_of_final_checkpoint(selfkd_runs):
    distributed = last_values(logged(selfkd_runs["fit"]), "val/")
    reference = single_process("validate", SELFKD, selfkd_runs["root"] / "ref", selfkd_runs["checkpoint"])
    assert set(distributed) >= {"val/loss", "val/top1_err", "val/top5_err", "val/nll", "val/ece", "val/aurc"}
    assert_metrics_equal(distributed, reference, "val/")


def test_image_classifier_ddp_test_metrics_equal_single_process(selfkd_runs):
    distributed = last_values(logged(selfkd_runs["test"]), "test/")
    reference = single_process("test", SELFKD, selfkd_runs["root"] / "ref", selfkd_runs["checkpoint"])
    assert_metrics_equal(distributed, reference, "test/")


def test_image_classifier_ddp_figures_written_once_per_stage(selfkd_runs):
    root = selfkd_runs["root"]
    figures = sorted(str(p.relative_to(root)) for p in root.rglob("*.png") if "ref" not in p.parts)
    assert figures == [
        "logs/fit/figures/val_reliability_diagram.png",
        "logs/fit/figures/val_risk_coverage.png",
        "logs/test/figures/test_reliability_diagram.png",
        "logs/test/figures/test_risk_coverage.png",
    ]


def test_image_classifier_ddp_predict_gathers_every_rank_in_index_order(selfkd_runs, tmp_path):
    predictions = load_predictions(selfkd_runs["predict"])
    cli = SelfKDCLI(args=["--config", str(SELFKD), f"--trainer.default_root_dir={tmp_path}"], run=False)
    batches = cli.trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=str(selfkd_runs["checkpoint"]))
    reference = {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
    assert predictions["index"].tolist() == list(range(359))  # both ranks' halves, each sample once, in order
    torch.testing.assert_close(predictions["probs"], reference["probs"])
    assert torch.equal(predictions["target"], reference["target"])
    assert not list(selfkd_runs["predict"].glob("predictions.pt.rank*"))


@pytest.mark.parametrize("name", ["baseline", "label_smoothing"])
def test_image_classifier_ddp_fit_matches_single_process(name, tmp_path):
    """The other training objectives under DDP; the evaluation they share is the selfkd runs' (fit, test, predict)."""
    config = CONFIGS / "digits" / f"{name}.yaml"
    fit = cli_run("fit", config, tmp_path, "fit", "--trainer.max_epochs=2")
    (checkpoint,) = fit.rglob("*.ckpt")
    values = logged(fit)
    assert len(values["val/loss"]) == 2 and values["train/loss"][-1] < values["train/loss"][0]
    reference = single_process("validate", config, tmp_path / "ref", checkpoint)
    assert_metrics_equal(last_values(values, "val/"), reference, "val/")
    assert sorted(p.name for p in fit.rglob("*.png")) == ["val_reliability_diagram.png", "val_risk_coverage.png"]
    assert all(torch.isfinite(torch.tensor(v)).all() for v in values.values())


def test_image_classifier_ddp_snapshot_teacher(tmp_path):
    snapshot = "--trainer.callbacks.init_args.mode=snapshot"
    fit = cli_run("fit", SELFKD, tmp_path, "fit", "--trainer.max_epochs=2", snapshot)
    values = logged(fit)
    assert values["skd/teacher_coverage"] == [0.0, 1.0]  # the snapshot teaches every sample from epoch 2 on
    assert 0.0 < values["skd/teacher_acc"][0] <= 1.0
    (checkpoint,) = fit.rglob("*.ckpt")
    reference = single_process("validate", SELFKD, tmp_path / "ref", checkpoint, snapshot)
    assert_metrics_equal(last_values(values, "val/"), reference, "val/")
