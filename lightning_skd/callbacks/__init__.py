"""Lightning callbacks: Self-KD (PS-KD), its alpha schedules, SKD's alpha scheduler and the prediction writer."""

from lightning_skd.callbacks.alpha_schedules import AlphaSchedule, ConstantAlpha, LinearAlpha, StepAlpha
from lightning_skd.callbacks.disk_prediction_cache import DiskPredictionCache
from lightning_skd.callbacks.prediction_cache import PredictionCache
from lightning_skd.callbacks.prediction_writer import PredictionWriter
from lightning_skd.callbacks.self_kd import SelfKDBatch, SelfKDCallback, self_kd_loss
from lightning_skd.callbacks.skd_alpha_scheduler import SKDAlphaScheduler
from lightning_skd.callbacks.token_prediction_cache import TokenPredictionCache

__all__ = [
    "AlphaSchedule",
    "ConstantAlpha",
    "DiskPredictionCache",
    "LinearAlpha",
    "PredictionCache",
    "PredictionWriter",
    "SelfKDBatch",
    "SelfKDCallback",
    "SKDAlphaScheduler",
    "StepAlpha",
    "TokenPredictionCache",
    "self_kd_loss",
]
