"""Lightning callbacks: Self-KD (PS-KD) with its teacher strategies and alpha schedules, SKD's scheduler, a writer.

:class:`TemperatureScaling` also reports the test metrics after post-hoc temperature scaling. Prediction tables and
row layouts live in their own modules (advanced use).
"""

from lightning_skd.callbacks.alpha_schedules import AlphaSchedule, ConstantAlpha, LinearAlpha, StepAlpha
from lightning_skd.callbacks.prediction_writer import PredictionWriter
from lightning_skd.callbacks.self_kd import SelfKDBatch, SelfKDCallback, self_kd_loss
from lightning_skd.callbacks.skd_alpha_scheduler import SKDAlphaScheduler
from lightning_skd.callbacks.teachers import BatchRows, CachedTeacher, SnapshotTeacher, Teacher
from lightning_skd.callbacks.temperature_scaling import TemperatureScaling

__all__ = [
    "AlphaSchedule",
    "BatchRows",
    "CachedTeacher",
    "ConstantAlpha",
    "LinearAlpha",
    "PredictionWriter",
    "SelfKDBatch",
    "SelfKDCallback",
    "SKDAlphaScheduler",
    "SnapshotTeacher",
    "StepAlpha",
    "Teacher",
    "TemperatureScaling",
    "self_kd_loss",
]
