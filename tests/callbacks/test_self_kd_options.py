"""Storage options, teacher refresh and the errors of SelfKDCallback at scale."""

import types

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DeepSpeedStrategy, FSDPStrategy
from torch.utils.data import DataLoader, TensorDataset

from lightning_skd import SelfKDCallback
from tests.helpers.callbacks import RecordingClassifier, indexed_loader
from tests.helpers.trainer import quiet_trainer


def epoch1_soft_targets(tmp_path, **kwargs) -> dict[int, torch.Tensor]:
    pl.seed_everything(0)
    model = RecordingClassifier()
    quiet_trainer([SelfKDCallback(alpha_T=1.0, **kwargs)], max_epochs=2).fit(model, indexed_loader(num_samples=40))
    return model.targets_by_epoch[1]


def test_self_kd_callback_compact_caches_agree_with_dense_float32(tmp_path):
    """Epoch 0 is identical in every run (hard labels), so epoch-1 targets differ only by the storage."""
    dense = epoch1_soft_targets(tmp_path)
    stored = {
        "float16": (epoch1_soft_targets(tmp_path, cache_dtype="float16"), 2e-3),
        "bfloat16": (epoch1_soft_targets(tmp_path, cache_dtype="bfloat16"), 8e-3),
        "disk": (epoch1_soft_targets(tmp_path, cache_dir=str(tmp_path / "disk")), 0.0),
        "top3 of 4": (epoch1_soft_targets(tmp_path, cache_topk=3), None),
    }
    for name, (targets, tolerance) in stored.items():
        for index, soft in dense.items():
            if tolerance is None:  # top-k: documented bound, twice the dropped probability mass
                dropped = soft.sort().values[0]
                assert (targets[index] - soft).abs().sum() <= 2 * dropped + 1e-6, name
            else:
                torch.testing.assert_close(targets[index], soft, atol=tolerance, rtol=0, msg=name)


def test_self_kd_callback_refreshes_snapshot_teacher_every_n_steps():
    snapshots = {}

    class Watcher(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            teacher = trainer.callbacks[0].teacher.model
            snapshots[trainer.global_step] = (teacher.linear.weight.clone(), pl_module.linear.weight.clone())

    pl.seed_everything(0)
    callback = SelfKDCallback(mode="snapshot", refresh_every_n_steps=2)
    quiet_trainer([callback, Watcher()], max_epochs=1).fit(RecordingClassifier(), indexed_loader(num_samples=20))
    # 5 steps: the teacher is refreshed after steps 2 and 4, and before step 3 and 5 it equals the model
    for step in (2, 4):
        teacher, model = snapshots[step]
        torch.testing.assert_close(teacher, model)
    teacher, model = snapshots[3]
    assert not torch.allclose(teacher, model)
    assert callback.teacher.last_refresh_step == 5  # end of epoch


@pytest.mark.parametrize("strategy", [FSDPStrategy, DeepSpeedStrategy])
def test_self_kd_callback_snapshot_refuses_sharded_strategies(strategy):
    fake_trainer = types.SimpleNamespace(strategy=strategy.__new__(strategy), callbacks=[], max_epochs=3, global_rank=0)
    callback = SelfKDCallback(mode="snapshot")
    fake_trainer.callbacks.append(callback)
    with pytest.raises(ValueError, match="mode='cache'"):
        callback.setup(fake_trainer, RecordingClassifier(), "fit")


def test_self_kd_callback_rejects_dataset_whose_length_changes():
    class Shrinking(pl.LightningDataModule):
        def train_dataloader(self):
            size = 12 if self.trainer.current_epoch == 0 else 8
            index = torch.arange(size)
            return DataLoader(TensorDataset(torch.randn(size, 3), index % 4, index), batch_size=4)

    fit_trainer = quiet_trainer([SelfKDCallback()], max_epochs=2, reload_dataloaders_every_n_epochs=1)
    with pytest.raises(ValueError, match="mode='snapshot'"):
        fit_trainer.fit(RecordingClassifier(), datamodule=Shrinking())


def test_self_kd_callback_refuses_a_cache_dir_of_another_run(tmp_path):
    cache_dir = str(tmp_path / "cache")
    quiet_trainer([SelfKDCallback(cache_dir=cache_dir)], max_epochs=2).fit(RecordingClassifier(), indexed_loader())
    assert (tmp_path / "cache" / "rank0" / "LATEST").exists()
    with pytest.raises(FileExistsError, match="another run"):
        quiet_trainer([SelfKDCallback(cache_dir=cache_dir)], max_epochs=2).fit(RecordingClassifier(), indexed_loader())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cache_dir": "x", "cache_dtype": "bfloat16"}, "cache_dir"),
        ({"cache_dir": "x", "cache_device": "cpu"}, "cache_dir"),
        ({"mode": "snapshot", "cache_dir": "x"}, "cache_dir"),
        ({"cache_keep_generations": 0}, "cache_keep_generations"),
        ({"mode": "snapshot", "refresh_every_n_steps": 0}, "refresh_every_n_steps"),
    ],
)
def test_self_kd_callback_rejects_bad_storage_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelfKDCallback(**kwargs)
