"""All-gathering the rows of a training step across processes (cache-mode Self-KD under DDP)."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_skd._lightning import pl


def all_gather_rows(trainer: pl.Trainer, keys: Tensor, payload: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """All ranks' ``(keys, payload)`` rows in rank order; pads uneven batches. One collective per tensor.

    Every rank must call this at every step, also with no rows (another rank may have some).
    """
    if trainer.world_size == 1:
        return keys, payload
    strategy = trainer.strategy
    sizes = strategy.all_gather(torch.tensor([len(keys)], device=keys.device)).reshape(-1)  # (W,)
    width = int(sizes.max())
    if width == 0:  # no rank has rows (all batches mixed): nothing to gather
        return keys, payload
    keep = torch.arange(width, device=keys.device)[None, :] < sizes[:, None]  # (W, width)

    def gather(rows: Tensor) -> Tensor:
        padded = torch.cat([rows, rows.new_zeros((width - len(rows), *rows.shape[1:]))]).contiguous()
        if padded.dtype in (torch.float32, torch.float64, torch.int32, torch.int64):
            return strategy.all_gather(padded)[keep]  # (W, width, ...) -> (sum of sizes, ...)
        # 16-bit payloads (float16/bfloat16 values, int16 class ids) travel as bytes: NCCL has no int16 and gloo no
        # bfloat16, but both move uint8.
        as_bytes = padded.view(torch.uint8)  # (width, k * itemsize)
        return strategy.all_gather(as_bytes)[keep].view(padded.dtype)

    return gather(keys), {name: gather(rows) for name, rows in payload.items()}
