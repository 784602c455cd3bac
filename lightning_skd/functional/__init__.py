"""Pure tensor functions: losses and metrics without state."""

from lightning_skd.functional.bleu import bleu_from_statistics, bleu_statistics
from lightning_skd.functional.calibration import (
    adaptive_expected_calibration_error,
    brier_score,
    expected_calibration_error,
    overconfidence_error,
    underconfidence_error,
)
from lightning_skd.functional.classification import negative_log_likelihood, top_k_error
from lightning_skd.functional.detection import voc07_average_precision, voc07_interpolated_ap
from lightning_skd.functional.embedding_skd import (
    EmbeddingSKDOutput,
    embedding_skd_loss,
    embedding_skd_loss_with_stats,
    embedding_skd_soft_target,
    mean_nearest_neighbour_distance,
    sigma_from_nearest_neighbours,
    skd_alpha,
)
from lightning_skd.functional.selective import aurc, eaurc, risk_coverage
from lightning_skd.functional.soft_targets import (
    hard_target_cross_entropy,
    self_kd_cross_entropy,
    self_kd_targets,
    soft_target_cross_entropy,
)
from lightning_skd.functional.statistics import SampleStatistics, sample_statistics
from lightning_skd.functional.temperature import fit_temperature

__all__ = [
    "EmbeddingSKDOutput",
    "bleu_from_statistics",
    "bleu_statistics",
    "embedding_skd_loss",
    "embedding_skd_loss_with_stats",
    "embedding_skd_soft_target",
    "hard_target_cross_entropy",
    "mean_nearest_neighbour_distance",
    "sigma_from_nearest_neighbours",
    "skd_alpha",
    "self_kd_cross_entropy",
    "self_kd_targets",
    "soft_target_cross_entropy",
    "SampleStatistics",
    "adaptive_expected_calibration_error",
    "aurc",
    "brier_score",
    "eaurc",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "overconfidence_error",
    "risk_coverage",
    "sample_statistics",
    "top_k_error",
    "underconfidence_error",
    "voc07_average_precision",
    "voc07_interpolated_ap",
]
