"""Regression tests for silent wrong results of SelfKDCallback (issue 16, findings 2-6).

Each test failed on main at 5322c2f (before the fix), as its docstring says.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader

from lightning_skd import SelfKDCallback, self_kd_loss
from lightning_skd.callbacks import SelfKDBatch
from lightning_skd.functional.soft_targets import self_kd_targets, soft_target_cross_entropy
from tests.helpers.callbacks import RecordingClassifier, TableClassifier, indexed_loader, table_loader
from tests.helpers.trainer import quiet_trainer

NUM_SAMPLES, NUM_CLASSES = 8, 4


def seeded_logits(seed: int = 0) -> torch.Tensor:
    return torch.randn(NUM_SAMPLES, NUM_CLASSES, generator=torch.Generator().manual_seed(seed))


def eq6_loss(logits: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Kim et al. Eq. 6 written out: mean over rows of H((1 - a) onehot(y) + a P_teacher, softmax(z))."""
    return soft_target_cross_entropy(logits, self_kd_targets(target, teacher, alpha))


# ---------------------------------------------------------------- finding 2: compiled modules in snapshot mode
class CompiledInner(RecordingClassifier):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.compile(self.linear, backend="eager")


@pytest.mark.parametrize("compile_where", ["lightning_module", "inner_module"])
def test_snapshot_teacher_is_independent_of_a_compiled_student(compile_where, one_thread):
    """Fails on 5322c2f for ``lightning_module``: the teacher's deepcopy shared the compiled ``forward``."""
    torch.manual_seed(0)
    module = RecordingClassifier() if compile_where == "lightning_module" else CompiledInner()
    model = torch.compile(module, backend="eager") if compile_where == "lightning_module" else module
    callback = SelfKDCallback(mode="snapshot")
    quiet_trainer([callback], max_epochs=1).fit(model, indexed_loader())
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = callback.teacher.model(x).clone()
        assert torch.allclose(before, module(x))  # the end-of-epoch weights are the teacher
        for parameter in module.parameters():
            parameter.zero_()
        assert torch.equal(module(x), torch.zeros(5, 4))
        assert torch.equal(callback.teacher.model(x), before)  # the frozen teacher does not follow the student
        callback.teacher.refresh(module, step=1)
        assert torch.equal(callback.teacher.model(x), torch.zeros(5, 4))  # ... until the next refresh


def test_snapshot_refuses_an_instance_forward_it_would_share(one_thread):
    """An instance-level ``forward`` that is not the module's own bound method would be shared with the teacher."""
    module = RecordingClassifier()
    module.forward = torch.compile(module.forward, backend="eager")
    with pytest.raises(ValueError, match="`forward` is an instance attribute"):
        quiet_trainer([SelfKDCallback(mode="snapshot")], max_epochs=1).fit(module, indexed_loader())


# ---------------------------------------------------------------- finding 3: the passed target is trained on
class RemappedTarget(TableClassifier):
    def training_target(self, target):
        return (target + 1) % NUM_CLASSES


@pytest.mark.parametrize("mode", ["cache", "snapshot"])
def test_self_kd_loss_trains_on_and_counts_against_the_passed_target(mode, one_thread):
    """Fails on 5322c2f: the batch's own target was used and the remapped one ignored."""
    logits = seeded_logits()
    target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=torch.Generator().manual_seed(2))
    remapped = (target + 1) % NUM_CLASSES
    logits[torch.arange(NUM_SAMPLES), remapped] += 10.0  # each sample predicts its remapped label
    module = RemappedTarget(logits)
    quiet_trainer([SelfKDCallback(mode=mode, alpha_T=0.5)], max_epochs=2).fit(module, table_loader(target))
    for step in module.steps:
        if step["epoch"] == 0:
            expected = F.cross_entropy(step["logits"], remapped[step["index"]])
        else:  # lr 0: the previous-epoch prediction is the same table row; alpha_2 = 0.5 * 2 / 2
            teacher = logits[step["index"]].softmax(dim=-1)
            expected = eq6_loss(step["logits"], remapped[step["index"]], teacher, torch.tensor(0.5))
        torch.testing.assert_close(step["loss"], expected, rtol=1e-5, atol=1e-6)
    assert module.trainer.callback_metrics["skd/teacher_acc"] == 1.0  # against the remapped labels: all right


class ForgetsAPosition(TableClassifier):
    def training_target(self, target):
        return torch.where(torch.arange(len(target)) == 0, torch.full_like(target, -100), target)


def test_self_kd_loss_refuses_a_target_with_other_ignored_positions(one_thread):
    """Fails on 5322c2f: only the shape was compared, the ignored sample silently trained on its batch label."""
    module = ForgetsAPosition(seeded_logits())
    target = torch.zeros(NUM_SAMPLES, dtype=torch.long)
    with pytest.raises(ValueError, match=r"ignored positions .*differ.* `target` has 1 ignored, the batch's target 0"):
        quiet_trainer([SelfKDCallback()], max_epochs=1).fit(module, table_loader(target))


# ---------------------------------------------------------------- finding 4: non-finite rows
class NaNAtEpochZero(TableClassifier):
    """Sample 0's logits are NaN in epoch 0 (its gradient is zero: the rest of the model stays finite)."""

    def forward(self, index):
        logits = super().forward(index)
        if self.current_epoch == 0:
            logits = torch.where((index == 0)[:, None], torch.full_like(logits, float("nan")), logits)
        return logits


@pytest.mark.parametrize("cache_dir", [False, True])
def test_nonfinite_predictions_are_never_stored_as_teachers(cache_dir, tmp_path, one_thread):
    """Fails on 5322c2f: the NaN row was cached and became sample 0's teacher, and nothing was logged or warned."""
    target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=torch.Generator().manual_seed(3))
    module = NaNAtEpochZero(seeded_logits(), lr=0.1)
    callback = SelfKDCallback(alpha_T=0.5, cache_dir=str(tmp_path / "cache") if cache_dir else None)
    with pytest.warns(UserWarning, match=r"in epoch 0, 1 rows of the model's predictions were non-finite"):
        quiet_trainer([callback], max_epochs=2).fit(module, table_loader(target))
    assert module.trainer.callback_metrics["skd/nonfinite_rows"] == 0.0  # epoch 1 (the last logged)
    assert module.trainer.callback_metrics["skd/teacher_coverage"] == (NUM_SAMPLES - 1) / NUM_SAMPLES
    assert torch.isfinite(module.table).all()
    teacher = callback.teacher.table.read_teacher(torch.arange(NUM_SAMPLES), epoch=2)
    assert torch.isfinite(teacher.values).all()
    assert teacher.valid.tolist() == [True] * NUM_SAMPLES  # sample 0's epoch-1 prediction is finite and stored
    first_of_epoch_one = next(s for s in module.steps if s["epoch"] == 1)
    assert torch.isfinite(first_of_epoch_one["loss"])
    # sample 0 had no teacher in epoch 1: its gradient row is the hard-label one, (p - onehot) / 4 rows
    row = first_of_epoch_one["logits"]
    expected = (row.detach().softmax(-1) - F.one_hot(target[:4], NUM_CLASSES)) / 4
    torch.testing.assert_close(row.grad[0], expected[0], rtol=1e-5, atol=1e-7)


class PoisonTeacher(Callback):
    """Writes NaN into sample 1's cached teacher row when epoch 1 starts."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            cache = next(cb for cb in trainer.callbacks if isinstance(cb, SelfKDCallback)).teacher.table
            cache.values[1] = float("nan")


def test_nonfinite_teacher_rows_are_never_used(one_thread):
    """Fails on 5322c2f: the NaN teacher row made the loss NaN."""
    target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=torch.Generator().manual_seed(4))
    logits = seeded_logits()
    module = TableClassifier(logits)
    with pytest.warns(UserWarning, match="1 non-finite teacher rows were not used"):
        quiet_trainer([SelfKDCallback(alpha_T=0.5), PoisonTeacher()], max_epochs=2).fit(module, table_loader(target))
    step = next(s for s in module.steps if s["epoch"] == 1)
    teacher = logits[:4].softmax(dim=-1)
    alpha = torch.tensor([0.5, 0.0, 0.5, 0.5])  # sample 1 trains on its hard label
    torch.testing.assert_close(step["loss"], eq6_loss(step["logits"], target[:4], teacher, alpha), rtol=1e-5, atol=0)
    assert module.trainer.callback_metrics["skd/nonfinite_teacher_rows"] == 1.0


# ---------------------------------------------------------------- finding 5: ignore_index for class targets
@pytest.mark.parametrize("mode", ["cache", "snapshot"])
def test_class_targets_at_ignore_index_add_no_loss_gradient_row_or_statistics(mode, one_thread):
    """Fails on 5322c2f: epoch 1 crashed with 'index -100 is out of bounds'."""
    target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=torch.Generator().manual_seed(5))
    target[[1, 6]] = -100
    logits = seeded_logits()
    module = TableClassifier(logits)
    callback = SelfKDCallback(mode=mode, alpha_T=0.5)
    quiet_trainer([callback], max_epochs=2).fit(module, table_loader(target))
    for step in module.steps:
        kept = step["target"] != -100
        if step["epoch"] == 0:
            expected = F.cross_entropy(step["logits"], step["target"], ignore_index=-100)
        else:
            teacher = logits[step["index"][kept]].softmax(dim=-1)
            expected = eq6_loss(step["logits"][kept], step["target"][kept], teacher, torch.tensor(0.5))
        torch.testing.assert_close(step["loss"], expected, rtol=1e-5, atol=1e-7)
        assert torch.equal(step["logits"].grad[~kept], torch.zeros((int((~kept).sum()), NUM_CLASSES)))
    assert module.trainer.callback_metrics["skd/teacher_coverage"] == 1.0  # over the 6 counted rows
    if mode == "cache":
        assert callback.teacher.table.stamps.tolist() == [1, -1, 1, 1, 1, 1, -1, 1]  # ignored samples: no cache row


# ---------------------------------------------------------------- finding 6: errors at step 0, naming the argument
class DictBatchCallback(SelfKDCallback):
    """Own batch layout, default teacher_logits: the teacher gets the whole mapping, which forward cannot take."""

    def unpack_batch(self, batch):
        return SelfKDBatch(inputs=batch, target=batch["y"], index=None)


class DictBatchClassifier(RecordingClassifier):
    def training_step(self, batch, batch_idx):
        return self_kd_loss(self, self(batch["x"]), batch["y"])


def test_snapshot_teacher_forward_that_does_not_fit_the_batch_fails_at_step_zero(one_thread):
    """Fails on 5322c2f: the teacher first ran at epoch 1, after a full epoch of training."""
    generator = torch.Generator().manual_seed(6)
    rows = [{"x": torch.randn(3, generator=generator), "y": torch.tensor(i % 4)} for i in range(8)]
    model = DictBatchClassifier()
    fit = quiet_trainer([DictBatchCallback(mode="snapshot")], max_epochs=2)
    with pytest.raises(TypeError) as raised:
        fit.fit(model, DataLoader(rows, batch_size=4))
    assert fit.global_step == 0 and fit.current_epoch == 0
    assert "override teacher_logits" in "\n".join(getattr(raised.value, "__notes__", []))


def test_cache_dir_that_is_a_file_is_refused_naming_cache_dir(tmp_path):
    """Fails on 5322c2f: accepted here, a bare NotADirectoryError at the end of the first batch."""
    path = tmp_path / "a_file"
    path.write_text("")
    with pytest.raises(ValueError, match="`cache_dir` must be a folder, got .*a_file.*not a folder"):
        SelfKDCallback(cache_dir=str(path))
    with pytest.raises(ValueError, match="`cache_dir` must be a folder this process can create.*NotADirectoryError"):
        SelfKDCallback(cache_dir=str(path / "below"))


def test_cache_dir_that_cannot_be_written_is_refused_naming_cache_dir(tmp_path, monkeypatch):
    """Fails on 5322c2f: a bare PermissionError at the end of the first batch (root can write anywhere: simulated)."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", refuse)
    with pytest.raises(ValueError, match="`cache_dir` must be a folder this process can create.*Permission denied"):
        SelfKDCallback(cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("cache_dir", [False, True])
def test_resume_with_a_resized_training_set_says_what_to_do(cache_dir, tmp_path, one_thread):
    """Fails on 5322c2f with cache_dir: the message said to use a new cache_dir, which does not fix the resume."""

    def fit(num_samples: int, ckpt_path: str | None = None) -> None:
        callback = SelfKDCallback(cache_dir=str(tmp_path / "cache") if cache_dir else None)
        checkpoint = ModelCheckpoint(dirpath=tmp_path / f"samples{num_samples}", filename="{epoch}", save_top_k=-1)
        run = quiet_trainer([callback, checkpoint], max_epochs=2, enable_checkpointing=True)
        run.fit(RecordingClassifier(), indexed_loader(num_samples=num_samples), ckpt_path=ckpt_path)

    fit(12)
    with pytest.raises(ValueError, match="in the checkpoint was built for 12.* Resume with the training set") as raised:
        fit(8, ckpt_path=str(tmp_path / "samples12" / "epoch=0.ckpt"))
    assert "Use a new `cache_dir`" not in str(raised.value)
