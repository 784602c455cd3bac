"""Sinusoidal position encodings (Vaswani et al., 2017, Sec. 3.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_table(num_positions: int, dim: int) -> Tensor:
    """``(num_positions, dim)`` table: ``PE[p, 2i] = sin(p / 10000^(2i/dim))``, ``PE[p, 2i+1] = cos(...)``.

    Example:
        >>> table = sinusoidal_table(3, 4)
        >>> table[0].tolist()
        [0.0, 1.0, 0.0, 1.0]
        >>> round(float(table[1, 0]), 4), round(float(table[1, 2]), 4)  # sin(1), sin(1 / 100)
        (0.8415, 0.01)

    """
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))  # (ceil(d/2),)
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return table.float()


class SinusoidalPositions(nn.Module):
    """Adds ``PE[offset : offset + T]`` to ``(B, T, d)`` inputs; at most ``max_positions`` positions.

    Args:
        dim: ``d``.
        max_positions: Longest sequence (positions are a non-persistent buffer, not in checkpoints).

    """

    def __init__(self, dim: int, max_positions: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.register_buffer("table", sinusoidal_table(max_positions, dim), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """``x (B, T, d)`` -> ``x + PE[offset : offset + T]``."""
        end = offset + x.shape[1]
        if end > self.max_positions:
            raise ValueError(
                f"SinusoidalPositions: a sequence of {end} positions exceeds `max_positions` = {self.max_positions}; "
                "raise `max_positions` or shorten the inputs"
            )
        return x + self.table[offset:end].to(x.dtype)
