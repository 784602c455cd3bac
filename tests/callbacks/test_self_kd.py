import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_skd import SelfKDCallback
from lightning_skd.callbacks import ConstantAlpha, LinearAlpha, StepAlpha
from lightning_skd.callbacks.teachers.snapshot import make_frozen_copy
from lightning_skd.functional import soft_target_cross_entropy
from tests.helpers.callbacks import RecordingClassifier, indexed_loader
from tests.helpers.trainer import quiet_trainer

NUM_CLASSES = 4


def expected_soft_targets(target: torch.Tensor, teacher_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    return (1 - alpha) * F.one_hot(target, NUM_CLASSES).float() + alpha * teacher_probs


def labels_by_index(loader: DataLoader) -> dict[int, int]:
    _, target, index = loader.dataset.tensors
    return dict(zip(index.tolist(), target.tolist(), strict=True))


def test_self_kd_callback_cache_mode_uses_previous_epoch_prediction_of_same_index():
    pl.seed_everything(0)
    loader = indexed_loader()
    model = RecordingClassifier()
    callback = SelfKDCallback(mode="cache", alpha_T=0.6)
    quiet_trainer([callback], max_epochs=3).fit(model, loader)

    labels = labels_by_index(loader)
    for epoch in (1, 2):
        alpha = 0.6 * (epoch + 1) / 3
        for i, soft in model.targets_by_epoch[epoch].items():
            teacher = model.logits_by_epoch[epoch - 1][i].softmax(-1)
            expected = expected_soft_targets(torch.tensor([labels[i]]), teacher[None], alpha)[0]
            torch.testing.assert_close(soft, expected)


def test_self_kd_callback_first_epoch_is_plain_cross_entropy():
    pl.seed_everything(0)
    loader = indexed_loader()
    model = RecordingClassifier()
    quiet_trainer([SelfKDCallback()], max_epochs=2).fit(model, loader)
    labels = labels_by_index(loader)
    for i, soft in model.targets_by_epoch[0].items():
        torch.testing.assert_close(soft, F.one_hot(torch.tensor(labels[i]), NUM_CLASSES).float())


def test_self_kd_callback_snapshot_mode_uses_end_of_previous_epoch_weights():
    pl.seed_everything(0)
    loader = indexed_loader()
    model = RecordingClassifier()
    callback = SelfKDCallback(mode="snapshot", alpha_T=0.8)
    quiet_trainer([callback], max_epochs=3).fit(model, loader)

    inputs, target, index = loader.dataset.tensors
    for epoch in (1, 2):
        weights = model.weights_by_epoch[epoch - 1]
        teacher = (inputs @ weights["linear.weight"].T + weights["linear.bias"]).softmax(-1)
        alpha = 0.8 * (epoch + 1) / 3
        expected = expected_soft_targets(target, teacher, alpha)
        for i, soft in model.targets_by_epoch[epoch].items():
            torch.testing.assert_close(soft, expected[i])


def test_self_kd_callback_loss_is_cross_entropy_against_soft_targets():
    pl.seed_everything(0)
    losses, expected = [], []

    class Checking(RecordingClassifier):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            inputs, target, index = batch
            callback = self.trainer.callbacks[0]
            losses.append(loss.detach())
            expected.append(soft_target_cross_entropy(self(inputs).detach(), callback.soft_targets(target)))
            return loss

    quiet_trainer([SelfKDCallback(alpha_T=0.9)], max_epochs=3).fit(Checking(), indexed_loader())
    torch.testing.assert_close(torch.stack(losses), torch.stack(expected))


@pytest.mark.parametrize("mode", ["cache", "snapshot"])
def test_self_kd_callback_logs_alpha_of_each_epoch(mode):
    alphas = []

    class Logging(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            metrics = trainer.callback_metrics
            alphas.append((float(metrics["skd/alpha_scheduled"]), float(metrics["skd/alpha"])))

    pl.seed_everything(0)
    quiet_trainer([SelfKDCallback(mode=mode, alpha_T=0.8), Logging()], max_epochs=4).fit(
        RecordingClassifier(), indexed_loader()
    )
    assert [scheduled for scheduled, _ in alphas] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert [applied for _, applied in alphas] == pytest.approx([0.0, 0.4, 0.6, 0.8])  # no teacher in epoch 1


def test_self_kd_callback_logs_teacher_accuracy_from_second_epoch():
    metrics = []

    class Logging(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            metrics.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("skd/")})

    pl.seed_everything(0)
    loader = indexed_loader()
    model = RecordingClassifier()
    quiet_trainer([SelfKDCallback(), Logging()], max_epochs=2).fit(model, loader)
    assert "skd/teacher_acc" not in metrics[0] and metrics[0]["skd/teacher_coverage"] == 0.0
    labels = labels_by_index(loader)
    agree = [int(model.logits_by_epoch[0][i].argmax()) == labels[i] for i in labels]
    assert metrics[1]["skd/teacher_acc"] == pytest.approx(sum(agree) / len(agree))
    assert metrics[1]["skd/teacher_coverage"] == 1.0


def test_self_kd_callback_snapshot_teacher_is_frozen_and_detached():
    pl.seed_everything(0)
    callback = SelfKDCallback(mode="snapshot")
    model = RecordingClassifier()
    fit_trainer = quiet_trainer([callback], max_epochs=2)
    fit_trainer.fit(model, indexed_loader())
    teacher = callback.teacher.model
    assert teacher is not model
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    assert teacher._trainer is None
    assert not any(isinstance(v, (DataLoader, pl.Trainer)) for v in vars(teacher).values())
    optimizer_params = {id(p) for group in fit_trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimizer_params & {id(p) for p in teacher.parameters()}
    torch.testing.assert_close(teacher.linear.weight, model.linear.weight)


def test_self_kd_callback_schedules_constant_and_callable():
    assert SelfKDCallback(schedule="constant", alpha_T=0.3).alpha_for_epoch(5, None) == 0.3
    assert SelfKDCallback(schedule=lambda t, T: 0.1 * t).alpha_for_epoch(3, 10) == pytest.approx(0.3)
    assert SelfKDCallback(schedule=ConstantAlpha(0.5)).alpha_for_epoch(1, 2) == 0.5
    assert SelfKDCallback(schedule="step", alpha_T=0.8).alpha_for_epoch(2, 8) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="alpha must lie in"):
        SelfKDCallback(schedule=lambda t, T: 1.5).alpha_for_epoch(1, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha_T": 1.5}, "alpha_T"),
        ({"alpha_T": -0.1}, "alpha_T"),
        ({"mode": "teacher"}, "mode"),
        ({"schedule": "cosine"}, "schedule"),
        ({"cache_dtype": "int8"}, "cache_dtype"),
        ({"cache_topk": 0}, "cache_topk"),
        ({"num_classes": 10, "cache_topk": 11}, "cache_topk"),
        ({"refresh_every_n_steps": 5}, "refresh_every_n_steps"),
        ({"mode": "snapshot", "cache_topk": 3}, "cache_topk"),
    ],
)
def test_self_kd_callback_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelfKDCallback(**kwargs)


def test_linear_alpha_rejects_alpha_outside_unit_interval():
    with pytest.raises(ValueError, match="alpha_T"):
        LinearAlpha(2.0)


def test_self_kd_callback_linear_schedule_needs_max_epochs():
    fit_trainer = quiet_trainer([SelfKDCallback()], max_epochs=-1, max_steps=3)
    with pytest.raises(ValueError, match="max_epochs"):
        fit_trainer.fit(RecordingClassifier(), indexed_loader())


def test_self_kd_callback_cache_mode_needs_indices():
    inputs, target = torch.randn(8, 3), torch.randint(0, NUM_CLASSES, (8,))
    loader = DataLoader(TensorDataset(inputs, target), batch_size=4)

    class TwoPart(RecordingClassifier):
        def training_step(self, batch, batch_idx):
            return super().training_step((*batch, torch.arange(len(batch[0]))), batch_idx)

    with pytest.raises(ValueError, match="IndexedDataset"):
        quiet_trainer([SelfKDCallback()], max_epochs=1).fit(TwoPart(), loader)


def test_self_kd_callback_detects_training_step_without_self_kd_loss():
    class PlainCE(RecordingClassifier):
        def training_step(self, batch, batch_idx):
            inputs, target, index = batch
            return F.cross_entropy(self(inputs), target)

    with pytest.raises(RuntimeError, match="self_kd_loss"):
        quiet_trainer([SelfKDCallback()], max_epochs=1).fit(PlainCE(), indexed_loader())


def test_self_kd_callback_rejects_index_outside_dataset():
    inputs, target = torch.randn(8, 3), torch.randint(0, NUM_CLASSES, (8,))
    loader = DataLoader(TensorDataset(inputs, target, torch.arange(8) + 5), batch_size=4)
    with pytest.raises(IndexError, match="training dataset has 8 samples"):
        quiet_trainer([SelfKDCallback()], max_epochs=2).fit(RecordingClassifier(), loader)


def test_self_kd_callback_rejects_class_count_mismatch():
    with pytest.raises(ValueError, match="num_classes=7"):
        quiet_trainer([SelfKDCallback(num_classes=7)], max_epochs=1).fit(RecordingClassifier(), indexed_loader())


def test_self_kd_callback_state_dict_round_trip_restores_cache_and_alpha():
    pl.seed_everything(0)
    callback = SelfKDCallback()
    quiet_trainer([callback], max_epochs=2).fit(RecordingClassifier(), indexed_loader())
    state = callback.state_dict()
    restored = SelfKDCallback()
    restored.load_state_dict(state)
    assert restored.alpha == callback.alpha
    torch.testing.assert_close(restored.teacher.table.values, callback.teacher.table.values)
    torch.testing.assert_close(restored.teacher.table.stamps, callback.teacher.table.stamps)


def test_self_kd_callback_state_dict_round_trip_restores_snapshot_teacher():
    pl.seed_everything(0)
    callback = SelfKDCallback(mode="snapshot")
    quiet_trainer([callback], max_epochs=2).fit(RecordingClassifier(), indexed_loader())
    restored = SelfKDCallback(mode="snapshot")
    module, restored_trainer = RecordingClassifier(), quiet_trainer([restored])
    restored.setup(restored_trainer, module, "fit")  # Lightning's order: setup, then the checkpoint's state
    restored.load_state_dict(callback.state_dict())
    restored.on_train_start(restored_trainer, module)  # the teacher is copied once the module is set up
    torch.testing.assert_close(restored.teacher.model.linear.weight, callback.teacher.model.linear.weight)
    with pytest.raises(ValueError, match="mode='snapshot'"):
        SelfKDCallback(mode="cache").load_state_dict(callback.state_dict())


@pytest.mark.parametrize("mode", ["cache", "snapshot"])
def test_self_kd_callback_reused_for_a_new_fit_starts_fresh(mode):
    """A second trainer.fit with the same callback and no checkpoint must not use the first run's predictions."""
    callback = SelfKDCallback(mode=mode, alpha_T=0.6)
    pl.seed_everything(0)
    quiet_trainer([callback], max_epochs=2).fit(RecordingClassifier(), indexed_loader())
    pl.seed_everything(1)
    loader = indexed_loader(seed=1)
    second = RecordingClassifier()
    quiet_trainer([callback], max_epochs=2).fit(second, loader)

    labels = labels_by_index(loader)
    inputs, _, _ = loader.dataset.tensors
    for i, soft in second.targets_by_epoch[0].items():
        torch.testing.assert_close(soft, F.one_hot(torch.tensor(labels[i]), NUM_CLASSES).float())
    weights = second.weights_by_epoch[0]
    for i, soft in second.targets_by_epoch[1].items():
        if mode == "cache":
            teacher = second.logits_by_epoch[0][i].softmax(-1)
        else:
            teacher = (inputs[i] @ weights["linear.weight"].T + weights["linear.bias"]).softmax(-1)
        expected = expected_soft_targets(torch.tensor([labels[i]]), teacher[None], 0.6)[0]
        torch.testing.assert_close(soft, expected)


def test_self_kd_callback_snapshot_teacher_shares_uncopyable_factories():
    """LightningCLI's optimizer factories can reach thread locks under DDP; the teacher shares them, copies the rest."""
    import threading

    module = RecordingClassifier()
    lock = threading.Lock()
    module.optimizer_factory = lambda params: (lock, params)  # deepcopy of a lock raises
    teacher = make_frozen_copy(module)
    assert teacher.optimizer_factory is module.optimizer_factory
    assert teacher.linear is not module.linear
    assert torch.equal(teacher.linear.weight, module.linear.weight)
    assert not teacher.linear.weight.requires_grad


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (LinearAlpha(0.8, start_epoch=3), [0.0, 0.0, 0.4, 0.8]),
        (LinearAlpha(0.8, start_epoch=1), [0.2, 0.4, 0.6, 0.8]),
        (StepAlpha(0.8, num_steps=2, start_epoch=2), [0.0, 0.0, 0.4, 0.8]),
        (ConstantAlpha(0.5, start_epoch=4), [0.0, 0.0, 0.0, 0.5]),
    ],
)
def test_alpha_schedules_start_late_and_reach_alpha_T_at_the_last_epoch(schedule, expected):
    assert [schedule(t, 4) for t in range(1, 5)] == pytest.approx(expected)


def test_alpha_schedules_reject_a_bad_start_epoch():
    with pytest.raises(ValueError, match="start_epoch"):
        LinearAlpha(0.8, start_epoch=0)
    with pytest.raises(ValueError, match=r"start_epoch=5\) starts after the last epoch T=4"):
        LinearAlpha(0.8, start_epoch=5)(1, 4)
