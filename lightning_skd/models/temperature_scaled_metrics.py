"""The second set of test metrics of a task module: the same metrics of ``logits / T`` (temperature scaling).

A task module that supports :class:`~lightning_skd.callbacks.TemperatureScaling` has

* ``evaluation_logits(batch) -> (logits, target)``: the logits ``(..., C)`` its validation and test metrics are
  computed from and their targets ``(...)`` (padding at ``-100``); the callback fits ``T`` on these over the
  validation split;
* a ``temperature`` attribute, ``None`` unless the callback sets it for the test: while it is a number, ``test_step``
  also feeds ``logits / temperature`` to a :class:`TemperatureScaledMetrics`, logged under ``test_ts/`` next to the
  unchanged ``test/`` values.

:class:`~lightning_skd.models.ImageClassifier` and :class:`~lightning_skd.models.Translator` (its token metrics) have
both.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics import MeanMetric

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd.functional.soft_targets import hard_target_cross_entropy
from lightning_skd.metrics import CalibrationMetrics

__all__ = ["TemperatureScaledMetrics"]


class TemperatureScaledMetrics(nn.Module):
    """``{stage}/loss`` and a module's calibration metrics, of temperature-scaled logits, reduced across processes.

    * ``{stage}/loss``: mean cross-entropy of ``logits / T`` over the non-padding targets (a
      :class:`~torchmetrics.MeanMetric`, exact under DDP);
    * ``{stage}/nll``, ``ece``, ``aurc``, ``eaurc``, ``top1_err``, ...: a clone of the module's own
      :class:`~lightning_skd.metrics.CalibrationMetrics` (the same bins, top-k, ``ignore_index``, ``from_logits``)
      with the prefix ``{stage}/``, fed ``logits / T`` (or its softmax, if the collection takes probabilities).

    Args:
        calibration: The module's collection of unscaled metrics (cloned, not changed).
        stage: Key prefix of the scaled values.
        ignore_index: Target value of padding.

    Example:
        >>> import math, torch
        >>> scaled = TemperatureScaledMetrics(CalibrationMetrics(3, top_k=(1,), prefix="test/"))
        >>> scaled.update(torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.tensor([0, 2]), temperature=2.0)
        >>> values = {key: round(value.item(), 4) for key, value in scaled.compute().items()}
        >>> values["test_ts/loss"], round((math.log(1 + 2 / math.e) + math.log(math.e + 2)) / 2, 4)
        (1.0514, 1.0514)
        >>> values["test_ts/top1_err"], sorted(values)[:3]
        (0.5, ['test_ts/adaptive_ece', 'test_ts/aurc', 'test_ts/brier'])

    """

    def __init__(
        self, calibration: CalibrationMetrics, stage: str = "test_ts", ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        self.stage = stage
        self.ignore_index = ignore_index
        self.loss = MeanMetric()
        self.calibration = calibration.clone(prefix=f"{stage}/")
        self.calibration.reset()

    def update(self, logits: Tensor, target: Tensor, temperature: float) -> None:
        """Add a batch: ``logits (..., C)`` as the module's metrics saw them, ``target (...)``, the temperature."""
        scaled = logits.float() / temperature
        target_nll = hard_target_cross_entropy(scaled, target, self.ignore_index, reduction="none")
        self.loss.update(target_nll[target != self.ignore_index])
        self.calibration.update(scaled if self.calibration.from_logits else scaled.softmax(dim=-1), target)

    def compute(self) -> dict[str, Tensor]:
        """Every value, global under DDP."""
        return {f"{self.stage}/loss": self.loss.compute(), **self.calibration.compute()}

    def reset(self) -> None:
        """Forget everything seen."""
        self.loss.reset()
        self.calibration.reset()
