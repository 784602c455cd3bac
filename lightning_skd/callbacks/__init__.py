"""Lightning callbacks: Self-KD (PS-KD) and its alpha schedules."""

from lightning_skd.callbacks.alpha_schedules import AlphaSchedule, ConstantAlpha, LinearAlpha, StepAlpha
from lightning_skd.callbacks.prediction_cache import PredictionCache
from lightning_skd.callbacks.self_kd import SelfKDBatch, SelfKDCallback, self_kd_loss

__all__ = [
    "AlphaSchedule",
    "ConstantAlpha",
    "LinearAlpha",
    "PredictionCache",
    "SelfKDBatch",
    "SelfKDCallback",
    "StepAlpha",
    "self_kd_loss",
]
