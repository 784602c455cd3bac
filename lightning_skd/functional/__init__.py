"""Pure tensor functions: losses and metrics without state."""

from lightning_skd.functional.soft_targets import self_kd_cross_entropy, self_kd_targets, soft_target_cross_entropy

__all__ = ["self_kd_cross_entropy", "self_kd_targets", "soft_target_cross_entropy"]
