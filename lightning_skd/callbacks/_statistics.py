"""Per-epoch statistics of Self-KD, accumulated on the device (no host sync per step) and summed over processes."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_skd._lightning import pl
from lightning_skd.callbacks.prediction_table import TeacherRows

_COUNTS = (
    "rows",  # training rows (non-ignored samples or tokens)
    "teacher_rows",  # rows with a valid teacher
    "teacher_correct",  # ... whose teacher argmax is the label
    "teacher_confidence",  # ... summed teacher max probability
    "alpha_applied",  # summed teacher weight actually applied per row (0 where no teacher)
    "student_rows",  # rows of un-mixed batches (the student's prediction is the sample's own)
    "student_correct",
    "student_taught_rows",  # ... with a valid teacher: the rows the teacher is judged on
    "student_taught_correct",
    "nonfinite_predictions",  # student rows that were NaN / inf (never kept as teachers)
    "nonfinite_teachers",  # teacher rows that were NaN / inf (not used)
)


class EpochStatistics:
    """Counts of one epoch; :meth:`summary` turns them into the logged ``skd/*`` values."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        dtype = torch.float32 if device.type == "mps" else torch.float64  # exact counts beyond 2**24 tokens
        self.counts = torch.zeros(len(_COUNTS), dtype=dtype, device=device)

    def add(
        self,
        target: Tensor,
        predictions: Tensor,
        finite: Tensor,
        teacher: TeacherRows | None,
        alpha: float,
        mixed: bool,
        nonfinite_teachers: Tensor | None,
    ) -> None:
        """Add one step's rows: labels ``(R,)``, student logits ``(R, C)``, which are finite ``(R,)``, the teacher."""
        zero = torch.zeros((), device=target.device)
        valid = teacher.valid if teacher is not None else torch.zeros_like(target, dtype=torch.bool)
        student_right = predictions.argmax(dim=-1) == target
        student = zero if mixed else torch.ones((), device=target.device)  # mixed images: not the sample's own
        values = [
            torch.full_like(zero, len(target)),
            valid.sum(),
            zero if teacher is None else ((teacher.argmax() == target) & valid).sum(),
            zero if teacher is None else (teacher.values.max(dim=-1).values * valid).sum(),
            alpha * valid.sum(),
            student * len(target),
            student * student_right.sum(),
            student * valid.sum(),
            student * (student_right & valid).sum(),
            (~finite).sum(),
            zero if nonfinite_teachers is None else nonfinite_teachers,
        ]
        self.counts += torch.stack([torch.as_tensor(v, device=target.device).float() for v in values]).to(self.counts)

    def summary(self, trainer: pl.Trainer) -> dict[str, float]:
        """The epoch's values, summed over processes: identical on every rank."""
        totals = trainer.strategy.reduce(self.counts.clone(), reduce_op="sum").tolist()
        counts = dict(zip(_COUNTS, totals, strict=True))
        taught = counts["student_taught_rows"] > 0
        student_rows = counts["student_taught_rows"] if taught else counts["student_rows"]
        student_correct = counts["student_taught_correct"] if taught else counts["student_correct"]
        summary = {
            "alpha": counts["alpha_applied"] / max(counts["rows"], 1.0),
            "teacher_coverage": counts["teacher_rows"] / max(counts["rows"], 1.0),
            "nonfinite_rows": counts["nonfinite_predictions"],
            "nonfinite_teacher_rows": counts["nonfinite_teachers"],
        }
        if student_rows > 0:
            summary["student_acc"] = student_correct / student_rows
        summary["_teacher_rows"] = counts["teacher_rows"]  # for the warning rule; not logged
        if counts["teacher_rows"] > 0:
            summary["teacher_acc"] = counts["teacher_correct"] / counts["teacher_rows"]
            summary["teacher_confidence"] = counts["teacher_confidence"] / counts["teacher_rows"]
        return summary
