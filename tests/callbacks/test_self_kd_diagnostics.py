"""What SelfKDCallback tells the user each epoch: teacher vs student accuracy, teacher confidence, applied alpha."""

import warnings

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from lightning_skd import LinearAlpha, SelfKDCallback
from tests.helpers.callbacks import TableClassifier, table_loader
from tests.helpers.trainer import quiet_trainer

NUM_SAMPLES, NUM_CLASSES = 64, 4


class Metrics(Callback):
    """Every epoch's ``skd/*`` values."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("skd/")})


class WrongTeacher(Callback):
    """From epoch 1 on, every cached teacher row puts all its mass on the class after the label."""

    def __init__(self, target: torch.Tensor) -> None:
        self.wrong = torch.nn.functional.one_hot((target + 1) % NUM_CLASSES, NUM_CLASSES).float()

    def on_train_epoch_start(self, trainer, pl_module):
        table = next(cb for cb in trainer.callbacks if isinstance(cb, SelfKDCallback)).teacher.table
        if table is not None:
            table.values.copy_(self.wrong)


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(NUM_SAMPLES, NUM_CLASSES, generator=generator)
    target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=generator)
    logits[: NUM_SAMPLES // 2].scatter_add_(1, target[: NUM_SAMPLES // 2, None], torch.full((32, 1), 3.0))
    return logits, target


def test_self_kd_callback_logs_student_and_teacher_accuracy_confidence_and_applied_alpha(one_thread):
    logits, target = data()
    metrics = Metrics()
    quiet_trainer([SelfKDCallback(alpha_T=0.6), metrics], max_epochs=2).fit(
        TableClassifier(logits), table_loader(target)
    )
    first, second = metrics.epochs
    right = (logits.argmax(-1) == target).float().mean().item()  # lr 0: the same predictions every epoch
    assert first["skd/student_acc"] == pytest.approx(right)  # no teacher yet: over all rows
    assert "skd/teacher_acc" not in first and first["skd/alpha"] == 0.0
    assert first["skd/alpha_scheduled"] == pytest.approx(0.3)
    assert second["skd/student_acc"] == pytest.approx(right)
    assert second["skd/teacher_acc"] == pytest.approx(right)  # the teacher is the same prediction, one epoch older
    assert second["skd/teacher_confidence"] == pytest.approx(logits.softmax(-1).max(-1).values.mean().item())
    assert second["skd/alpha"] == pytest.approx(0.6)


def test_self_kd_callback_warns_once_when_the_teacher_is_clearly_worse_than_the_student(one_thread):
    logits, target = data()
    callbacks = [SelfKDCallback(alpha_T=0.6), WrongTeacher(target), Metrics()]
    with pytest.warns(UserWarning, match=r"teacher was right on 0\.0% of the training rows, the student on") as seen:
        quiet_trainer(callbacks, max_epochs=3).fit(TableClassifier(logits), table_loader(target))
    assert sum("clearly worse" in str(w.message) for w in seen) == 1  # once, though epochs 1 and 2 both qualify
    assert callbacks[2].epochs[2]["skd/teacher_acc"] == 0.0


def test_self_kd_callback_does_not_warn_while_alpha_is_zero_or_the_teacher_keeps_up(one_thread):
    logits, target = data()
    delayed = SelfKDCallback(schedule=LinearAlpha(0.6, start_epoch=3))  # alpha 0 in epochs 1 and 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_trainer([delayed, WrongTeacher(target)], max_epochs=3).fit(TableClassifier(logits), table_loader(target))
        quiet_trainer([SelfKDCallback(alpha_T=0.6)], max_epochs=3).fit(TableClassifier(logits), table_loader(target))
    worse = [w for w in seen if "clearly worse" in str(w.message)]
    assert len(worse) == 1 and "in epoch 2" in str(worse[0].message)  # the delayed run, once alpha > 0


def test_teacher_is_worse_rule_has_both_sides():
    callback = SelfKDCallback()
    summary = {"alpha": 0.3, "teacher_acc": 0.5, "student_acc": 0.61}
    assert callback.teacher_is_worse(summary, teacher_rows=50)
    assert not callback.teacher_is_worse({**summary, "student_acc": 0.6}, teacher_rows=50)  # 10 points: not clearly
    assert not callback.teacher_is_worse(summary, teacher_rows=49)  # too few rows to judge
    assert not callback.teacher_is_worse({**summary, "alpha": 0.09}, teacher_rows=50)  # the teacher barely counts
