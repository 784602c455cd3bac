"""torchmetrics' COCO-style ``MeanAveragePrecision``, synchronised correctly when processes saw unequal image counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.distributed as dist
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision


class COCOMeanAveragePrecision(MeanAveragePrecision):
    """:class:`torchmetrics.detection.MeanAveragePrecision` whose per-image states are gathered as whole lists.

    torchmetrics keeps one tensor per image in list states with ``dist_reduce_fx=None`` and gathers them with one
    ``all_gather`` per list element, so two processes that evaluated a different number of images (an unrepeated
    distributed sampler over an odd test set) issue different numbers of collectives and crash or hang. Here every
    list state is gathered with one ``all_gather_object`` (rank 0's images, then rank 1's, ...); the computation is
    torchmetrics' own. Arguments are those of ``MeanAveragePrecision``.

    Example:
        >>> import torch
        >>> metric = COCOMeanAveragePrecision(iou_type="bbox", backend="faster_coco_eval")
        >>> box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
        >>> metric.update([{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}],
        ...               [{"boxes": box, "labels": torch.tensor([0])}])
        >>> metric.compute()["map_50"]
        tensor(1.)

    """

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None) -> None:
        group = process_group or self.process_group
        world_size = dist.get_world_size(group=group)
        for attr in self._reductions:
            local = getattr(self, attr)
            local = [item.cpu() if isinstance(item, Tensor) else item for item in local]
            gathered: list[Any] = [None] * world_size
            dist.all_gather_object(gathered, local, group=group)
            merged = [item.to(self.device) if isinstance(item, Tensor) else item for part in gathered for item in part]
            setattr(self, attr, merged)
