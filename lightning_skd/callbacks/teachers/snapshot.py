"""The snapshot teacher: a frozen copy of the model, refreshed at the end of every epoch."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lightning_skd._lightning import pl
from lightning_skd.callbacks.prediction_table import TeacherRows
from lightning_skd.callbacks.teachers.base import BatchRows, Teacher, check_state_kind

_SHARDED_STRATEGIES = ("FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy")
# LightningModule methods that torch.compile(LightningModule) replaces by instance attributes wrapping the bound method
_COMPILED_METHODS = ("forward", "training_step", "validation_step", "test_step", "predict_step")


def _call_model(model: nn.Module, inputs: Any) -> Tensor:
    return model(inputs)


class SnapshotTeacher(Teacher):
    """``mode="snapshot"``: a frozen copy of the model predicts the teacher distribution of the current batch.

    The copy is refreshed with the student's weights at the end of each epoch (and every ``refresh_every_n_steps``
    optimizer steps if set) and runs in eval mode. It never gets gradients, is not in the optimizer, not wrapped by
    DDP and holds no trainer. Before the first refresh it runs once, on the first training batch, with no weight in
    the loss, so that a forward that does not fit the batch fails at step 0. A module compiled with ``torch.compile``
    (the LightningModule, or an inner module) gets an independent compiled copy.

    BatchNorm in eval mode uses its running statistics, which lag the weights early in training (few steps per
    epoch, a high learning rate): the copy can then be a much worse teacher than the student it was copied from.
    ``batch_norm="batch"`` normalises the teacher's batch with its own statistics instead (BatchNorm layers in train
    mode, everything else, dropout included, in eval mode). The default stays ``"running"``, the usual inference
    behaviour; compare ``skd/teacher_acc`` with ``skd/student_acc`` to see which fits a model.

    Args:
        refresh_every_n_steps: Also refresh the copy every this many optimizer steps.
        forward: ``(model, inputs) -> logits`` of the copy; ``model(inputs)`` by default.
        batch_norm: ``"running"`` (eval-mode BatchNorm) or ``"batch"`` (BatchNorm on the teacher's batch statistics).

    """

    def __init__(
        self,
        refresh_every_n_steps: int | None = None,
        forward: Callable[[nn.Module, Any], Tensor] = _call_model,
        batch_norm: str = "running",
    ) -> None:
        if batch_norm not in ("running", "batch"):
            raise ValueError(f"`snapshot_batch_norm` must be 'running' or 'batch', got {batch_norm!r}.")
        if refresh_every_n_steps is not None and not (
            isinstance(refresh_every_n_steps, int) and refresh_every_n_steps >= 1
        ):
            raise ValueError(
                f"`refresh_every_n_steps` must be a positive integer or None, got {refresh_every_n_steps!r}."
            )
        self.refresh_every_n_steps = refresh_every_n_steps
        self.forward = forward
        self.batch_norm = batch_norm
        self.model: pl.LightningModule | None = None
        self.has_weights = False  # the copy holds weights from a finished epoch or refresh
        self.last_refresh_step = 0
        self._restored_weights: dict[str, Tensor] | None = None  # a checkpoint's weights, until the copy exists
        self._checked = False  # the copy ran once in this fit

    def check_trainer(self, trainer: pl.Trainer) -> None:
        """Refuse sharded strategies, where no process holds the whole model to copy."""
        if any(cls.__name__ in _SHARDED_STRATEGIES for cls in type(trainer.strategy).__mro__):
            raise ValueError(
                f"SelfKDCallback(mode='snapshot') copies the whole model and cannot work with the sharded "
                f"{type(trainer.strategy).__name__}; use mode='cache' (or a DDP strategy)."
            )

    def reset(self) -> None:
        """Forget an earlier fit's weights."""
        self.has_weights = False
        self.last_refresh_step = 0
        self._restored_weights = None

    def start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Copy the module (set up by now: some modules build their layers in ``setup``) and restore its weights."""
        self.model = self._set_modes(make_frozen_copy(pl_module).to(pl_module.device))
        if self._restored_weights is not None:
            self.model.load_state_dict(self._restored_weights)
            self._restored_weights = None
        self._checked = False

    def rows(self, trainer: pl.Trainer, batch: BatchRows) -> TeacherRows | None:
        """The copy's softmax on the batch's inputs (teacher forcing for token targets)."""
        if not self.has_weights and self._checked:
            return None
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            try:
                logits = self.forward(self.model, batch.inputs)
            except Exception as error:
                if not self._checked:
                    error.add_note(
                        "SelfKDCallback(mode='snapshot') ran its teacher on the first training batch: "
                        "teacher_logits(teacher, inputs) with the inputs SelfKDCallback.unpack_batch returned. If the "
                        "batch layout is your own, override teacher_logits as well as unpack_batch."
                    )
                raise
        self._checked = True
        expected = tuple(batch.mask.shape)
        if not isinstance(logits, Tensor) or logits.ndim != batch.mask.ndim + 1 or tuple(logits.shape[:-1]) != expected:
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(
                f"SelfKDCallback.teacher_logits must return logits of shape {expected + ('C',)} for this batch "
                f"(target shape {expected}), got {got}. Override teacher_logits for models whose forward returns "
                "something else."
            )
        rows = batch.rows(logits)  # (R, C)
        valid = torch.full((len(batch.positions),), self.has_weights, dtype=torch.bool, device=rows.device)
        return TeacherRows(rows.float().softmax(dim=-1) * valid[:, None], None, valid)

    def observe(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: BatchRows, predictions: Tensor, keep: Tensor
    ) -> None:
        """Refresh every ``refresh_every_n_steps`` optimizer steps, if set."""
        step = trainer.global_step
        if self.refresh_every_n_steps and step > self.last_refresh_step and step % self.refresh_every_n_steps == 0:
            self.refresh(pl_module, step)

    def end_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The end-of-epoch weights become the next epoch's teacher."""
        self.refresh(pl_module, trainer.global_step)

    @torch.no_grad()
    def refresh(self, pl_module: pl.LightningModule, step: int) -> None:
        """Copy the student's current weights into the teacher."""
        self.model.load_state_dict(pl_module.state_dict())
        self._set_modes(self.model.to(pl_module.device))
        self.has_weights = True
        self.last_refresh_step = step

    def _set_modes(self, model: nn.Module) -> nn.Module:
        model.eval()
        if self.batch_norm == "batch":
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.train()
        return model

    def state_dict(self) -> dict[str, Any]:
        """The teacher's weights (on CPU) and the refresh position."""
        weights = None if self.model is None else {k: v.cpu() for k, v in self.model.state_dict().items()}
        return {
            "kind": "snapshot",
            "weights": weights if weights is not None else self._restored_weights,
            "has_weights": self.has_weights,
            "last_refresh_step": self.last_refresh_step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the weights (into the copy once it exists) and the refresh position."""
        check_state_kind(state_dict, "snapshot")
        self.has_weights = state_dict["has_weights"]
        self.last_refresh_step = state_dict["last_refresh_step"]
        weights = state_dict["weights"]
        if weights is not None and self.model is not None:
            self.model.load_state_dict(weights)
        else:
            self._restored_weights = weights


def make_frozen_copy(pl_module: pl.LightningModule) -> pl.LightningModule:
    """A deep copy of ``pl_module`` in eval mode without gradients, sharing its plain callables.

    LightningModule.__getstate__ drops the trainer reference. Plain callables held by the module (optimizer /
    scheduler factories from LightningCLI) are shared, not copied: the teacher only runs forward passes, and under
    DDP such factories can reach objects that cannot be copied (thread locks). torch.compile(LightningModule) makes
    ``forward`` and the step methods instance attributes wrapping the *student's* bound methods; the copy drops them
    (falling back to its own class methods) and compiles its own ``forward`` with the same compiler settings.
    """
    compiled = getattr(pl_module, "_compiler_ctx", None)
    wrapped = {name for name in _COMPILED_METHODS if name in vars(pl_module)}
    if compiled is None:
        for name in wrapped:
            value = vars(pl_module)[name]
            if not (inspect.ismethod(value) and value.__self__ is pl_module):
                raise ValueError(
                    f"SelfKDCallback(mode='snapshot') cannot copy {type(pl_module).__name__}: its `{name}` is an "
                    f"instance attribute ({type(value).__name__}) that the frozen teacher would share with the "
                    "student. Compile with torch.compile(module) or compile the inner nn.Module instead, or use "
                    "mode='cache'."
                )
    shared = {
        id(value): value
        for name, value in vars(pl_module).items()
        if callable(value) and not isinstance(value, (nn.Module, type)) and name not in wrapped
    }
    if compiled is not None:
        shared[id(compiled)] = None  # the copy is compiled below, not through the student's context
    teacher = copy.deepcopy(pl_module, memo=shared)
    if compiled is not None:
        for name in wrapped:
            delattr(teacher, name)
        teacher.forward = compiled["dynamo_ctx"](teacher.forward)
    teacher.requires_grad_(False)
    return teacher.eval()
