"""Cutout (DeVries & Taylor 2017): zero a square hole at a random position of each training image."""

from __future__ import annotations

import torch
from torch import Tensor


class Cutout(torch.nn.Module):
    """Per-sample image transform: set a ``size × size`` square, centred at a uniformly drawn pixel, to zero.

    The square is clipped at the image borders (so near a border less than ``size²`` pixels are erased), as in the
    reference code; it is applied after normalisation, so the hole holds the dataset mean. Kim et al. use
    ``size = 8`` on CIFAR-100.

    Args:
        size: Side of the square hole in pixels.

    Example:
        >>> torch.manual_seed(0) and None
        >>> image = Cutout(size=2)(torch.ones(1, 4, 4))
        >>> int((image == 0).sum()) in (1, 2, 4)
        True

    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"Cutout: `size` must be an integer > 0, got {size!r}.")
        self.size = size

    def forward(self, image: Tensor) -> Tensor:  # (C, H, W) -> (C, H, W)
        """The image with one square zeroed."""
        height, width = image.shape[-2:]
        cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
        y0, y1 = max(cy - self.size // 2, 0), min(cy + self.size // 2 + self.size % 2, height)
        x0, x1 = max(cx - self.size // 2, 0), min(cx + self.size // 2 + self.size % 2, width)
        image = image.clone()
        image[..., y0:y1, x0:x1] = 0
        return image
