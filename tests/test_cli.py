from pathlib import Path

import pytest

from lightning_skd.cli import SelfKDCLI, main

CONFIGS = Path(__file__).parents[1] / "configs"
QUICK = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2"]


@pytest.mark.parametrize("name", ["baseline", "label_smoothing", "selfkd"])
def test_cli_fit_runs_each_digits_config(name, tmp_path):
    main(
        ["fit", "--config", str(CONFIGS / "digits" / f"{name}.yaml"), f"--trainer.default_root_dir={tmp_path}", *QUICK]
    )
    assert list(tmp_path.rglob("*.ckpt"))


def test_cli_validate_test_predict_run_from_a_checkpoint(tmp_path):
    config = ["--config", str(CONFIGS / "digits" / "selfkd.yaml"), f"--trainer.default_root_dir={tmp_path}"]
    main(["fit", *config, *QUICK])
    checkpoint = str(next(tmp_path.rglob("*.ckpt")))
    main(["validate", *config, f"--ckpt_path={checkpoint}", "--trainer.limit_val_batches=2"])
    main(["test", *config, f"--ckpt_path={checkpoint}", "--trainer.limit_test_batches=2"])
    main(["predict", *config, f"--ckpt_path={checkpoint}", "--trainer.limit_predict_batches=2"])
    cli = SelfKDCLI(args=["--config", str(CONFIGS / "digits" / "selfkd.yaml")], run=False)
    predictions = cli.trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint)
    assert predictions[0]["probs"].shape == (64, 10)
    assert predictions[0]["index"].tolist() == list(range(64))


@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS / "cifar100").glob("*.yaml")))
def test_cli_parses_cifar100_configs(name):
    cli = SelfKDCLI(args=["--config", str(CONFIGS / "cifar100" / name)], run=False)
    assert cli.trainer.max_epochs == 300
    assert cli.model.hparams.num_classes == 100
    assert cli.datamodule.batch_size == (64 if name.startswith("pyramidnet") else 128)  # Kim et al.: PyramidNet 64


# The ImageNet configs ask for 16-mixed (GPU training); built on a CPU, Lightning falls back to bf16-mixed and says so.
@pytest.mark.filterwarnings(
    "ignore:You passed `Trainer\\(accelerator='cpu', precision='16-mixed'\\)` but AMP with fp16"
)
@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS / "imagenet").glob("*.yaml")))
def test_cli_parses_imagenet_configs(name):
    cli = SelfKDCLI(args=["--config", str(CONFIGS / "imagenet" / name)], run=False)
    assert cli.trainer.max_epochs == 90
    assert cli.model.hparams.num_classes == 1000
    callbacks = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "SelfKDCallback"]
    assert [(cb.mode, cb.alpha_T) for cb in callbacks] == ([("snapshot", 0.3)] if "selfkd" in name else [])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--trainer.callbacks.init_args.alpha_T=1.5", "alpha_T"),
        ("--trainer.callbacks.init_args.mode=teacher", "mode"),
    ],
)
def test_cli_reports_bad_callback_arguments(override, message, tmp_path, capsys):
    args = [
        "fit",
        "--config",
        str(CONFIGS / "digits" / "selfkd.yaml"),
        f"--trainer.default_root_dir={tmp_path}",
        override,
    ]
    with pytest.raises((SystemExit, ValueError)) as error:
        main(args)
    assert message in str(error.value) + capsys.readouterr().err


def test_cli_linear_schedule_without_max_epochs_fails(tmp_path):
    args = [
        "fit",
        "--config",
        str(CONFIGS / "digits" / "selfkd.yaml"),
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_epochs=-1",
        "--trainer.max_steps=2",
    ]
    with pytest.raises(ValueError, match="max_epochs"):
        main(args)


def test_cli_builds_alpha_schedule_objects_from_yaml(tmp_path):
    override = tmp_path / "schedule.yaml"
    override.write_text(
        "trainer:\n  max_epochs: 4\n  callbacks:\n    - class_path: lightning_skd.SelfKDCallback\n      init_args:\n"
        "        schedule:\n          class_path: lightning_skd.callbacks.StepAlpha\n"
        "          init_args: {alpha_T: 0.6, num_steps: 2}\n"
    )
    cli = SelfKDCLI(args=["--config", str(CONFIGS / "digits" / "selfkd.yaml"), "--config", str(override)], run=False)
    (callback,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "SelfKDCallback"]
    assert [callback.alpha_for_epoch(t, 4) for t in range(1, 5)] == [0.0, 0.3, 0.3, 0.6]
