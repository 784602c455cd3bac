"""Stateful (``torchmetrics``) metrics: calibration and selective-classification metrics of the PS-KD paper."""

from lightning_skd.metrics.adaptive_calibration_error import AdaptiveExpectedCalibrationError
from lightning_skd.metrics.aurc import AURC
from lightning_skd.metrics.bleu import CorpusBLEU
from lightning_skd.metrics.brier_score import BrierScore
from lightning_skd.metrics.coco_map import COCOMeanAveragePrecision
from lightning_skd.metrics.collection import CalibrationMetrics
from lightning_skd.metrics.eaurc import EAURC
from lightning_skd.metrics.expected_calibration_error import (
    ExpectedCalibrationError,
    OverconfidenceError,
    UnderconfidenceError,
)
from lightning_skd.metrics.negative_log_likelihood import NegativeLogLikelihood
from lightning_skd.metrics.plots import reliability_diagram, risk_coverage_curve
from lightning_skd.metrics.sentence_nll import SentenceNLL
from lightning_skd.metrics.top_k_error import TopKError
from lightning_skd.metrics.voc07_map import VOC07MeanAveragePrecision

__all__ = [
    "AdaptiveExpectedCalibrationError",
    "AURC",
    "BrierScore",
    "CalibrationMetrics",
    "COCOMeanAveragePrecision",
    "CorpusBLEU",
    "EAURC",
    "ExpectedCalibrationError",
    "NegativeLogLikelihood",
    "OverconfidenceError",
    "SentenceNLL",
    "TopKError",
    "UnderconfidenceError",
    "VOC07MeanAveragePrecision",
    "reliability_diagram",
    "risk_coverage_curve",
]
