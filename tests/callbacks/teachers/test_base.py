"""A teacher strategy of the user's own: an exponential moving average (EMA) of the student's weights."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lightning_skd import SelfKDCallback
from lightning_skd.callbacks.prediction_table import TeacherRows
from lightning_skd.callbacks.teachers import BatchRows, Teacher
from lightning_skd.callbacks.teachers.snapshot import make_frozen_copy
from tests.helpers.callbacks import RecordingClassifier, indexed_loader
from tests.helpers.trainer import quiet_trainer


class EMATeacher(Teacher):
    """The teacher is ``ema <- decay * ema + (1 - decay) * student`` after every optimizer step."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.model = None
        self.used: list[dict[str, torch.Tensor]] = []  # the teacher weights each step's rows came from

    def start(self, trainer, pl_module):
        self.model = make_frozen_copy(pl_module)

    def rows(self, trainer, batch: BatchRows) -> TeacherRows:
        self.used.append({k: v.clone() for k, v in self.model.state_dict().items()})
        with torch.no_grad():
            probs = batch.rows(self.model(batch.inputs)).softmax(dim=-1)
        return TeacherRows(probs, None, torch.ones(len(probs), dtype=torch.bool))

    @torch.no_grad()
    def observe(self, trainer, pl_module, batch, predictions, keep):
        for ema, student in zip(self.model.parameters(), pl_module.parameters(), strict=True):
            ema.lerp_(student, 1.0 - self.decay)

    def state_dict(self):
        return {"kind": "ema", "weights": {k: v.clone() for k, v in self.model.state_dict().items()}}


def test_a_user_teacher_strategy_drives_the_soft_targets(one_thread):
    pl.seed_everything(0)
    model, teacher = RecordingClassifier(), EMATeacher(decay=0.5)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    callback = SelfKDCallback(teacher=teacher, alpha_T=0.6, schedule="constant")
    loader = indexed_loader(shuffle=False)
    quiet_trainer([callback], max_epochs=2).fit(model, loader)

    assert callback.mode == "EMATeacher"
    torch.testing.assert_close(teacher.used[0]["linear.weight"], initial["linear.weight"])  # step 0: the initial copy
    assert not torch.equal(teacher.used[-1]["linear.weight"], initial["linear.weight"])  # it moved with the student
    inputs, target, _ = loader.dataset.tensors
    last = teacher.used[-1]  # the last step's teacher: the last batch of epoch 1 (samples 8..11)
    probs = (inputs[8:] @ last["linear.weight"].T + last["linear.bias"]).softmax(-1)
    for row, i in enumerate(range(8, 12)):
        expected = 0.4 * F.one_hot(target[i], 4).float() + 0.6 * probs[row]
        torch.testing.assert_close(model.targets_by_epoch[1][i], expected)
    assert callback.state_dict()["teacher"]["kind"] == "ema"


def test_a_teacher_strategy_replaces_mode_and_its_options():
    with pytest.raises(ValueError, match="`teacher` replaces `mode`"):
        SelfKDCallback(teacher=EMATeacher(0.5), cache_topk=3)
    with pytest.raises(ValueError, match="must be a lightning_skd.callbacks.teachers.Teacher"):
        SelfKDCallback(teacher="ema")


class BatchNormClassifier(RecordingClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Sequential(
            torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 4)
        )


@pytest.mark.parametrize("batch_norm", ["running", "batch"])
def test_snapshot_teacher_batch_norm_uses_running_or_batch_statistics(batch_norm, one_thread):
    pl.seed_everything(0)
    callback = SelfKDCallback(mode="snapshot", snapshot_batch_norm=batch_norm)
    quiet_trainer([callback], max_epochs=1).fit(BatchNormClassifier(), indexed_loader())
    model = callback.teacher.model
    norm, dropout = model.linear[1], model.linear[2]
    assert norm.training == (batch_norm == "batch") and not dropout.training and not model.training
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        norm.running_mean.add_(5.0)  # only eval-mode BatchNorm reads the running statistics
        after = model(x)
    assert torch.equal(before, after) == (batch_norm == "batch")
    with pytest.raises(ValueError, match="snapshot_batch_norm"):
        SelfKDCallback(mode="snapshot", snapshot_batch_norm="train")
