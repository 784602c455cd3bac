"""Exact resume of SelfKDCallback: 2 epochs + resume 2 equals 4 uninterrupted; mid-epoch checkpoints never mix."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lightning_skd import LightningSKDWarning, SelfKDCallback
from tests.helpers.callbacks import RecordingClassifier
from tests.helpers.trainer import quiet_trainer

NUM_SAMPLES, NUM_CLASSES = 12, 4


def epoch_shuffled_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(NUM_SAMPLES, 3, generator=generator)
    target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=generator)
    dataset = TensorDataset(inputs, target, torch.arange(NUM_SAMPLES))
    # Lightning calls set_epoch on this sampler: the order is a function of the epoch, reproducible after resume
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    return DataLoader(dataset, batch_size=4, sampler=sampler)


def fit(
    mode: str, root: Path, max_epochs: int, ckpt_path: str | None = None, checkpoint: ModelCheckpoint | None = None
):
    pl.seed_everything(0)
    model = RecordingClassifier()
    callback = SelfKDCallback(mode=mode, alpha_T=0.7)
    checkpoint = checkpoint or ModelCheckpoint(dirpath=root, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = quiet_trainer(
        [callback, checkpoint], max_epochs=max_epochs, default_root_dir=root, enable_checkpointing=True
    )
    trainer.fit(model, epoch_shuffled_loader(), ckpt_path=ckpt_path)
    return model, callback


@pytest.mark.parametrize("mode", ["cache", "snapshot"])
def test_self_kd_callback_resume_after_epoch_equals_uninterrupted(mode, tmp_path):
    full_model, full_cb = fit(mode, tmp_path / "full", max_epochs=4)
    resumed_model, resumed_cb = fit(mode, tmp_path / "resumed", 4, ckpt_path=str(tmp_path / "full" / "epoch=1.ckpt"))

    assert resumed_cb.alpha == full_cb.alpha == pytest.approx(0.7)
    for epoch in (2, 3):
        assert resumed_model.targets_by_epoch[epoch].keys() == full_model.targets_by_epoch[epoch].keys()
        for index, soft in full_model.targets_by_epoch[epoch].items():
            torch.testing.assert_close(resumed_model.targets_by_epoch[epoch][index], soft)
    if mode == "cache":
        torch.testing.assert_close(resumed_cb.teacher.table.values, full_cb.teacher.table.values)
        torch.testing.assert_close(resumed_cb.teacher.table.stamps, full_cb.teacher.table.stamps)
    else:
        for name, weight in full_cb.teacher.model.state_dict().items():
            torch.testing.assert_close(resumed_cb.teacher.model.state_dict()[name], weight)
    torch.testing.assert_close(resumed_model.linear.weight, full_model.linear.weight)


@pytest.mark.filterwarnings("ignore:You.re resuming from a checkpoint that ended before the epoch ended")  # on purpose
def test_self_kd_callback_resume_mid_epoch_never_uses_current_epoch_predictions(tmp_path):
    mid_epoch = ModelCheckpoint(dirpath=tmp_path / "full", save_top_k=-1, every_n_train_steps=2, filename="{step}")
    full_model, _ = fit("cache", tmp_path / "full", max_epochs=3, checkpoint=mid_epoch)
    checkpoint = tmp_path / "full" / "step=4.ckpt"  # after the first of three steps of epoch 1 (0-based)
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1

    with pytest.warns(LightningSKDWarning, match="checkpoint was taken during epoch 1"):
        resumed_model, _ = fit("cache", tmp_path / "resumed", 3, ckpt_path=str(checkpoint))

    # Lightning restarts the interrupted epoch with a fresh iterator: some samples are met twice, others not at all.
    # Every soft target is then the hard label or uses a prediction of an earlier epoch (Eq. 4's P_{i<t}): from the
    # resumed run, or from the first run before the checkpoint. Never a prediction of the current epoch.
    for epoch, targets in resumed_model.targets_by_epoch.items():
        alpha = 0.7 * (epoch + 1) / 3
        for index, soft in targets.items():
            hard = F.one_hot(full_model.targets_by_epoch[0][index].argmax(), NUM_CLASSES).float()
            earlier = [
                run.logits_by_epoch.get(e, {}).get(index) for run in (resumed_model, full_model) for e in range(epoch)
            ]
            candidates = [(1 - alpha) * hard + alpha * logits.softmax(-1) for logits in earlier if logits is not None]
            assert any(torch.allclose(soft, c) for c in candidates) or torch.allclose(soft, hard)
            current = (1 - alpha) * hard + alpha * resumed_model.logits_by_epoch[epoch][index].softmax(-1)
            assert not torch.allclose(soft, current)


class ValidatedClassifier(RecordingClassifier):
    def validation_step(self, batch, batch_idx):
        inputs, target, _ = batch
        self.log("val_loss", F.cross_entropy(self(inputs), target))


@pytest.mark.parametrize("storage", ["snapshot", "cache", "disk"])
def test_self_kd_callback_resume_from_checkpoint_saved_after_validation(storage, tmp_path):
    """With save_on_train_epoch_end=False the checkpoint is saved after validation, before on_train_epoch_end."""

    def run(root: Path, ckpt_path: str | None = None):
        pl.seed_everything(0)
        model = ValidatedClassifier()
        kwargs = {"cache_dir": str(tmp_path / "cache"), "cache_keep_generations": 4} if storage == "disk" else {}
        callback = SelfKDCallback(mode="snapshot" if storage == "snapshot" else "cache", alpha_T=0.7, **kwargs)
        checkpoint = ModelCheckpoint(
            dirpath=root, monitor="val_loss", save_top_k=-1, filename="{epoch}", save_on_train_epoch_end=False
        )
        trainer = quiet_trainer([callback, checkpoint], max_epochs=4, enable_checkpointing=True)
        trainer.fit(model, epoch_shuffled_loader(), epoch_shuffled_loader(), ckpt_path=ckpt_path)
        return model

    full = run(tmp_path / "full")
    resumed = run(tmp_path / "resumed", ckpt_path=str(tmp_path / "full" / "epoch=1.ckpt"))
    for epoch in (2, 3):
        for index, soft in full.targets_by_epoch[epoch].items():
            torch.testing.assert_close(resumed.targets_by_epoch[epoch][index], soft)
