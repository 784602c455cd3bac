"""Every row of Kim et al. Table 1 (CIFAR-100) and Table 2 (ImageNet) has a config with the paper's hyper-parameters.

The configs are parsed by the ``lightning-skd`` CLI (class paths and argument types checked by jsonargparse, without
building the networks), and their values compared with the paper's Sec. 3.1 / 3.2 and appendix B.1, written out here.
"""

from pathlib import Path

import pytest

from lightning_skd.cli import SelfKDCLI
from lightning_skd.compare import Sweep

CONFIGS = Path(__file__).parents[1] / "configs"

TABLE1_ARCHS = {
    "preact_resnet18": "cifar:preact_resnet18",
    "resnet50": "torchvision:resnet50",  # with cifar_stem: the same network as cifar:resnet50
    "resnet101": "torchvision:resnet101",
    "densenet_bc_100_12": "cifar:densenet_bc_100_12",
    "resnext29_8x64d": "cifar:resnext29_8x64d",
    "pyramidnet200_240": "cifar:pyramidnet200_240",
}
BASIC_ROWS = ["baseline", "label_smoothing", "selfkd"]
PYRAMIDNET_ROWS = BASIC_ROWS + [
    "cutout",
    "cutout_selfkd",
    "cutmix",
    "cutmix_selfkd",
    "cutmix_shakedrop",
    "cutmix_shakedrop_selfkd",
]
TABLE1 = [
    (arch, row) for arch in TABLE1_ARCHS for row in (PYRAMIDNET_ROWS if arch.startswith("pyramid") else BASIC_ROWS)
]
TABLE2 = ["baseline", "label_smoothing", "selfkd", "cutmix", "cutmix_selfkd"]


class ParseOnlyCLI(SelfKDCLI):
    """Parses and validates a config like ``lightning-skd fit --config`` but builds nothing."""

    def instantiate_classes(self) -> None:
        pass


def parse(path: Path):
    return ParseOnlyCLI(args=["--config", str(path)], run=False).config


def check_row(config, row: str, alpha_T: float, mode: str) -> None:  # noqa: N803
    init = config.model.init_args
    assert (init.label_smoothing == 0.1) == ("label_smoothing" in row)
    callbacks = [cb for cb in (config.trainer.callbacks or []) if cb.class_path == "lightning_skd.SelfKDCallback"]
    assert len(callbacks) == ("selfkd" in row)
    if callbacks:
        assert callbacks[0].init_args.alpha_T == alpha_T
        assert callbacks[0].init_args.mode == mode
        assert callbacks[0].init_args.schedule == "linear"
    if "cutmix" in row:
        assert init.batch_mix.class_path == "lightning_skd.regularizers.CutMix"
        assert (init.batch_mix.init_args.alpha, init.batch_mix.init_args.p) == (1.0, 0.5)
    else:
        assert init.batch_mix is None
    assert init.optimizer.class_path == "torch.optim.SGD"
    assert init.optimizer.init_args.momentum == 0.9
    assert init.lr_scheduler.class_path == "torch.optim.lr_scheduler.MultiStepLR"
    assert init.lr_scheduler.init_args.gamma == 0.1


@pytest.mark.parametrize(("arch", "row"), TABLE1, ids=[f"{a}_{r}" for a, r in TABLE1])
def test_table1_config_has_paper_hyperparameters(arch, row):
    config = parse(CONFIGS / "cifar100" / f"{arch}_{row}.yaml")
    init = config.model.init_args
    pyramid = arch.startswith("pyramid")
    assert init.backbone == TABLE1_ARCHS[arch] + ("_shakedrop" if "shakedrop" in row else "")
    assert init.cifar_stem == (arch in ("resnet50", "resnet101"))
    assert init.num_classes == 100
    assert config.trainer.max_epochs == 300
    assert init.optimizer.init_args.lr == (0.25 if pyramid else 0.1)
    assert init.optimizer.init_args.weight_decay == (1e-4 if pyramid else 5e-4)
    assert config.data.init_args.batch_size == (64 if pyramid else 128)
    assert init.lr_scheduler.init_args.milestones == [150, 225]
    assert config.data.class_path == "lightning_skd.data.CIFAR100DataModule"
    assert config.data.init_args.cutout == (8 if "cutout" in row else 0)
    check_row(config, row, alpha_T=0.7, mode="cache")


@pytest.mark.parametrize("row", TABLE2)
def test_table2_config_has_paper_hyperparameters(row):
    config = parse(CONFIGS / "imagenet" / f"resnet152_{row}.yaml")
    init = config.model.init_args
    assert init.backbone == "torchvision:resnet152" and init.num_classes == 1000
    assert config.trainer.max_epochs == 90
    assert (init.optimizer.init_args.lr, init.optimizer.init_args.weight_decay) == (0.1, 1e-4)
    assert config.data.init_args.batch_size == 256
    assert init.lr_scheduler.init_args.milestones == [30, 60]
    check_row(config, row, alpha_T=0.3, mode="snapshot")


def test_sweep_files_cover_every_table_row():
    covered = set()
    for path in sorted((CONFIGS / "sweeps").glob("table*.yaml")):
        sweep = Sweep.from_file(path)
        assert sweep.baseline == "Baseline"
        covered |= {m.config.relative_to(CONFIGS.resolve()).as_posix() for m in sweep.methods}
    expected = {f"cifar100/{a}_{r}.yaml" for a, r in TABLE1} | {f"imagenet/resnet152_{r}.yaml" for r in TABLE2}
    assert covered == expected


def test_digits_sweep_parses():
    sweep = Sweep.from_file(CONFIGS / "sweeps" / "digits.yaml")
    assert [m.config.relative_to(CONFIGS.resolve()).as_posix() for m in sweep.methods] == [
        "digits/demo/baseline.yaml",
        "digits/demo/label_smoothing.yaml",
        "digits/demo/selfkd.yaml",
    ]
    assert len(sweep.seeds) >= 5


@pytest.mark.parametrize("name", ["baseline", "label_smoothing", "selfkd"])
def test_digits_demo_config_parses(name):
    config = parse(CONFIGS / "digits" / "demo" / f"{name}.yaml")
    assert config.trainer.max_epochs == 40
    assert config.model.init_args.lr_scheduler.init_args.milestones == [25, 35]
    assert config.model.init_args.optimizer.init_args.weight_decay == 0.0
    assert config.data.init_args.augment is False


def test_fashion_mnist_overconfident_sweep_runs_the_issue_rows():
    sweep = Sweep.from_file(CONFIGS / "sweeps" / "fashion_mnist_overconfident.yaml")
    rows = {m.name: (m.config.name, m.temperature_scaling) for m in sweep.methods}
    assert rows == {
        "Baseline": ("baseline.yaml", True),
        "+ Label smoothing": ("label_smoothing.yaml", False),
        "+ Self-KD (cache)": ("selfkd_cache.yaml", True),
        "+ Self-KD (snapshot)": ("selfkd_snapshot.yaml", True),
    }
    assert len(sweep.seeds) >= 5


@pytest.mark.parametrize("name", ["baseline", "label_smoothing", "selfkd_cache", "selfkd_snapshot"])
def test_fashion_mnist_overconfident_config_parses(name):
    config = parse(CONFIGS / "fashion_mnist_overconfident" / f"{name}.yaml")
    assert config.model.init_args.backbone == "cifar:resnet20"
    assert (config.data.init_args.train_size, config.data.init_args.val_size) == (1000, 2000)
    assert config.trainer.max_epochs == 40


def test_message_catalogs_converged_sweep_runs_the_issue_rows_on_one_regime():
    sweep = Sweep.from_file(CONFIGS / "sweeps" / "message_catalogs_converged.yaml")
    assert [m.config.stem for m in sweep.methods] == [
        "en_de_baseline", "en_de_label_smoothing", "en_de_selfkd_snapshot", "en_de_selfkd_cache",
        "en_de_selfkd_delayed", "en_de_skd",
    ]  # fmt: skip
    assert len(sweep.seeds) >= 2 and sweep.test_ckpt_path == "best"
    assert {"test/bleu", "test/bleu_beam5", "test/nll", "test/oce", "test/uce"} <= {m.key for m in sweep.metrics}
    configs = {m.config.stem: parse(m.config) for m in sweep.methods}
    regime = {(c.trainer.max_epochs, c.data.init_args.data_dir, c.model.init_args.model.init_args.d_model)
              for c in configs.values()}  # fmt: skip
    assert regime == {(40, "data/message_catalogs_en_de_3k", 128)}
    (delayed,) = [cb for cb in configs["en_de_selfkd_delayed"].trainer.callbacks if "SelfKD" in cb.class_path]
    schedule = delayed.init_args.schedule.init_args
    assert (schedule.alpha_T, schedule.start_epoch) == (0.7, 11)
    (cache,) = [cb for cb in configs["en_de_selfkd_cache"].trainer.callbacks if "SelfKD" in cb.class_path]
    assert (cache.init_args.cache_topk, cache.init_args.cache_dtype) == (8, "float16")


def test_message_catalogs_lm_sweep_has_the_four_rows_of_hahn_and_choi_table_2():
    sweep = Sweep.from_file(CONFIGS / "sweeps" / "message_catalogs_lm.yaml")
    rows = {m.config.stem: parse(m.config).model.init_args for m in sweep.methods}
    assert list(rows) == ["baseline", "noise", "skd", "noise_skd"]
    assert {name: (init.embedding_noise_std > 0, init.skd) for name, init in rows.items()} == {
        "baseline": (False, False), "noise": (True, False), "skd": (False, True), "noise_skd": (True, True),
    }  # fmt: skip
    assert all(init.sigma == "auto" for init in rows.values() if init.skd)
