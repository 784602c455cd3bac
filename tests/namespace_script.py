"""The core paths of lightning_skd on the Lightning package it was imported on (tests/test_lightning.py).

Every Trainer, module and LightningCLI here comes from ``lightning_skd._lightning``, i.e. from the package
lightning_skd chose, as a user's own code on that package would import them. Under ``pytorch_lightning`` (the test
process's own) the test calls :func:`run_core_paths` directly; ``lightning.pytorch`` is chosen when lightning_skd is
first imported, so there the test runs :func:`main` in a fresh process::

    LIGHTNING_SKD_NAMESPACE=lightning.pytorch python -c "from tests.namespace_script import main; main('ROOT')"

:func:`mismatch` is the opposite: lightning_skd on ``pytorch_lightning``, then a ``lightning.pytorch`` Trainer; it
prints what the user sees as one JSON line.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import lightning_skd
import lightning_skd.cli
from lightning_skd import SelfKDCallback, self_kd_loss
from lightning_skd._lightning import LightningCLI, pl
from lightning_skd.models import ImageClassifier

CONFIGS = Path(__file__).parents[1] / "configs"
NUM_SAMPLES, NUM_FEATURES, NUM_CLASSES = 12, 3, 4


class UserClassifier(pl.LightningModule):
    """A user's own module on the chosen package: a linear classifier trained with ``self_kd_loss``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(NUM_FEATURES, NUM_CLASSES)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs)

    def training_step(self, batch, batch_idx):
        inputs, target, _ = batch
        return self_kd_loss(self, self(inputs), target)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def epoch_shuffled_loader() -> DataLoader:
    """Indexed batches whose order is a function of the epoch only (Lightning calls ``set_epoch``): resumable."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(NUM_SAMPLES, NUM_FEATURES, generator=generator)
    target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=generator)
    dataset = TensorDataset(inputs, target, torch.arange(NUM_SAMPLES))
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    return DataLoader(dataset, batch_size=4, sampler=sampler)


def fit_two_epochs(mode: str, root: Path, ckpt_path: str | None = None) -> tuple[UserClassifier, SelfKDCallback]:
    """Two epochs on the chosen package's Trainer, a checkpoint after each (``epoch=0.ckpt``, ``epoch=1.ckpt``)."""
    pl.seed_everything(0)
    model, callback = UserClassifier(), SelfKDCallback(mode=mode, alpha_T=0.7)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=root, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        callbacks=[callback, checkpoint],
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, epoch_shuffled_loader(), ckpt_path=ckpt_path)
    return model, callback


def fit_and_resume(mode: str, root: Path, foreign_checkpoint: Path | None = None) -> None:
    """Resuming from the checkpoint of epoch 0 ends exactly where the uninterrupted run ends (weights, teacher).

    ``foreign_checkpoint``: the same checkpoint written under the other Lightning package, resumed here as well.
    """
    full_model, full_callback = fit_two_epochs(mode, root / "full")
    checkpoints = [root / "full" / "epoch=0.ckpt", *([foreign_checkpoint] if foreign_checkpoint else [])]
    for number, checkpoint in enumerate(checkpoints):
        resumed_model, resumed_callback = fit_two_epochs(mode, root / f"resumed{number}", ckpt_path=str(checkpoint))
        torch.testing.assert_close(resumed_model.linear.weight, full_model.linear.weight)
        if mode == "cache":
            torch.testing.assert_close(resumed_callback.teacher.table.values, full_callback.teacher.table.values)
        else:
            for name, weight in full_callback.teacher.model.state_dict().items():
                torch.testing.assert_close(resumed_callback.teacher.model.state_dict()[name], weight)
        # the linear schedule's alpha of the last epoch is alpha_T
        assert abs(resumed_callback.alpha - 0.7) < 1e-9 and abs(full_callback.alpha - 0.7) < 1e-9


USER_CONFIG = """\
seed_everything: 0
trainer:
  accelerator: cpu
  max_epochs: 1
  limit_train_batches: 3
  limit_val_batches: 2
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
  callbacks:
    - class_path: lightning_skd.SelfKDCallback
      init_args: {{mode: cache}}
    - class_path: ModelCheckpoint
model:
  class_path: lightning_skd.models.ImageClassifier
  init_args: {{backbone: "lightning_skd:small_cnn", num_classes: 10, in_channels: 1}}
data:
  class_path: lightning_skd.data.DigitsDataModule
  init_args: {{batch_size: 64}}
"""


def user_cli(root: Path) -> None:
    """A user's own ``LightningCLI`` of the chosen package fits lightning_skd's classes, named by class path."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yaml"
    config.write_text(USER_CONFIG.format(root=root))
    cli = LightningCLI(args=["fit", "--config", str(config)], save_config_kwargs={"overwrite": True})
    assert isinstance(cli.model, ImageClassifier), type(cli.model)
    assert any(isinstance(callback, SelfKDCallback) for callback in cli.trainer.callbacks), cli.trainer.callbacks
    assert cli.trainer.current_epoch == 1 and cli.trainer.global_step == 3, cli.trainer.global_step
    assert len(list(root.rglob("*.ckpt"))) == 1, list(root.rglob("*"))


def lightning_skd_fit(root: Path) -> None:
    """``lightning-skd fit`` (its entry point), one epoch of digits; the checkpoint names the LightningCLI used."""
    command = ["fit", "--config", str(CONFIGS / "digits" / "selfkd.yaml"), "--trainer.max_epochs=1"]
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    lightning_skd.cli.main([*command, f"--trainer.default_root_dir={root}", *quiet])
    (checkpoint,) = root.rglob("*.ckpt")
    assert checkpoint.name == "epoch=0-step=17.ckpt", checkpoint  # 1079 training digits, batches of 64
    hyper_parameters = torch.load(checkpoint, weights_only=False)["hyper_parameters"]
    instantiator = f"{lightning_skd.LIGHTNING_NAMESPACE}.cli.instantiate_module"
    assert hyper_parameters["_instantiator"] == instantiator, hyper_parameters["_instantiator"]


def run_core_paths(root: Path, foreign_checkpoint: Path | None = None) -> None:
    """Fit with SelfKDCallback (cache, snapshot), checkpoint, exact resume; a user's LightningCLI; lightning-skd.

    ``foreign_checkpoint``: a cache-mode ``epoch=0.ckpt`` of :func:`fit_two_epochs` under the other package.
    """
    fit_and_resume("cache", root / "cache", foreign_checkpoint)
    fit_and_resume("snapshot", root / "snapshot")
    user_cli(root / "cli")
    lightning_skd_fit(root / "lightning_skd_fit")


def main(root: str, foreign_checkpoint: str | None = None) -> None:
    """The core paths in a fresh process; the other Lightning package must never have been imported."""
    other = "pytorch_lightning" if lightning_skd.LIGHTNING_NAMESPACE == "lightning.pytorch" else "lightning.pytorch"
    run_core_paths(Path(root), None if foreign_checkpoint is None else Path(foreign_checkpoint))
    assert other not in sys.modules, f"{other} was imported"
    print(json.dumps({"namespace": lightning_skd.LIGHTNING_NAMESPACE}))


def mismatch() -> None:
    """lightning_skd on ``pytorch_lightning``, then ``lightning.pytorch``: the warning and the error a user sees."""
    import lightning.pytorch as L  # noqa: N812 - after lightning_skd on purpose

    from lightning_skd.data import DigitsDataModule

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DigitsDataModule()
        ImageClassifier(backbone="lightning_skd:small_cnn", in_channels=1)  # once per process: no second warning
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, callbacks=[SelfKDCallback()], enable_progress_bar=False
    )

    class LModule(L.LightningModule):  # a user's own lightning.pytorch module
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(NUM_FEATURES, NUM_CLASSES)

        def forward(self, inputs):
            return self.linear(inputs)

        def training_step(self, batch, batch_idx):
            return self_kd_loss(self, self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    try:
        trainer.fit(LModule(), epoch_shuffled_loader())
        error = None
    except TypeError as exception:
        error = str(exception)
    print(
        json.dumps(
            {
                "namespace": lightning_skd.LIGHTNING_NAMESPACE,
                "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
                "error": error,
                "trained": trainer.global_step,
            }
        )
    )
