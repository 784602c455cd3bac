"""Modular excess area under the risk-coverage curve."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from lightning_skd.functional.selective import _eaurc_arg_validation, _eaurc_compute
from lightning_skd.metrics.aurc import AURC


class EAURC(AURC):
    """Excess AURC: AURC minus the AURC of an oracle ordering with the same errors, accumulated over batches.

    See :func:`~lightning_skd.functional.eaurc` for the two oracles (``"exact"``, the default and the PS-KD code's;
    ``"closed_form"``, ``r + (1 - r) ln(1 - r)``) and the units. Same state as :class:`AURC`, so inside a
    :class:`torchmetrics.MetricCollection` the two can share it as one compute group.

    Args:
        oracle: ``"exact"`` or ``"closed_form"``.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = EAURC()
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
        >>> metric.update(torch.tensor([[0.4, 0.6], [0.7, 0.3]]), torch.tensor([1, 1]))
        >>> metric.compute()
        tensor(0.2083)

    """

    def __init__(
        self,
        oracle: Literal["exact", "closed_form"] = "exact",
        ignore_index: int | None = None,
        from_logits: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(ignore_index=ignore_index, from_logits=from_logits, validate_args=validate_args, **kwargs)
        _eaurc_arg_validation(oracle)
        self.oracle = oracle

    def compute(self) -> Tensor:
        """E-AURC of everything seen since the last reset (``nan`` if nothing), as a float32 scalar."""
        return _eaurc_compute(*self.selective_state(), oracle=self.oracle).float()
