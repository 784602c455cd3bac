"""Batch-level mixing regularisers (CutMix, Mixup) that report *which* samples they mixed and how.

A mixer is called on the training images of a batch. With probability ``p`` it mixes the batch and returns the mixed
images together with a :class:`MixInfo`: the partner ``perm[i]`` of every sample ``i`` and the weight ``lam`` of the
sample's own target, so that any target -- hard labels, label smoothing or Self-KD soft targets -- is mixed with the
*same* pair of samples as the images: ``target_i = lam * t_i + (1 - lam) * t_perm[i]``. Otherwise the batch is
returned unchanged with ``None``.

Randomness comes from torch's global generator (seeded by ``seed_everything``), so a seeded run is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MixInfo:
    """How a batch was mixed: sample ``i`` holds ``lam`` of itself and ``1 - lam`` of sample ``perm[i]``."""

    perm: Tensor  # (B,) long: the partner of each sample
    lam: float  # weight of each sample's own target, in [0, 1]

    def mix(self, targets: Tensor) -> Tensor:
        """Mix per-sample rows ``(B, ...)`` (soft targets, one-hot labels, teacher rows) as the images were.

        Example:
            >>> info = MixInfo(perm=torch.tensor([1, 0]), lam=0.75)
            >>> info.mix(torch.eye(2))
            tensor([[0.7500, 0.2500],
                    [0.2500, 0.7500]])

        """
        if targets.shape[0] != len(self.perm):
            raise ValueError(f"MixInfo.mix: expected {len(self.perm)} rows, got shape {tuple(targets.shape)}.")
        return self.lam * targets + (1.0 - self.lam) * targets[self.perm.to(targets.device)]


class BatchMix:
    """Base of the batch mixers: decides per batch whether to mix, draws ``lam`` and the pairing.

    Args:
        alpha: Parameter of the ``Beta(alpha, alpha)`` distribution of ``lam`` (1.0: uniform, CutMix's default).
        p: Probability that a batch is mixed (Kim et al. use 0.5 when combining with Self-KD).

    """

    def __init__(self, alpha: float = 1.0, p: float = 0.5) -> None:
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise ValueError(f"{type(self).__name__}: `alpha` must be a number > 0, got {alpha!r}.")
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"{type(self).__name__}: `p` must be a probability in [0, 1], got {p!r}.")
        self.alpha = float(alpha)
        self.p = float(p)

    def __call__(self, images: Tensor) -> tuple[Tensor, MixInfo | None]:
        """Mix ``images`` ``(B, C, H, W)`` with probability ``p``; return the images and how they were mixed."""
        if images.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects images of shape (B, C, H, W), got {tuple(images.shape)}.")
        if float(torch.rand(())) >= self.p or len(images) < 2:
            return images, None
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        perm = torch.randperm(len(images), device=images.device)
        return self.mix_images(images, perm, lam)

    def mix_images(self, images: Tensor, perm: Tensor, lam: float) -> tuple[Tensor, MixInfo]:
        """Combine ``images`` with ``images[perm]`` for the drawn ``lam``; subclasses define how."""
        raise NotImplementedError


class MixUp(BatchMix):
    """Mixup (Zhang et al. 2018): ``x_i = lam * x_i + (1 - lam) * x_perm[i]``.

    Example:
        >>> images = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
        >>> mixed, info = MixUp().mix_images(images, torch.tensor([1, 0]), lam=0.25)
        >>> mixed[:, 0, 0, 0], info.lam
        (tensor([0.7500, 0.2500]), 0.25)

    """

    def mix_images(self, images: Tensor, perm: Tensor, lam: float) -> tuple[Tensor, MixInfo]:
        """Convex combination of each image with its partner."""
        return lam * images + (1.0 - lam) * images[perm], MixInfo(perm=perm, lam=lam)


class CutMix(BatchMix):
    """CutMix (Yun et al. 2019): paste a box of ``images[perm]`` into every image of the batch.

    The box has area ``(1 - lam) H W`` (side ``sqrt(1 - lam)`` of each dimension) and a uniformly drawn centre; it is
    clipped at the borders, and ``lam`` is then recomputed as the fraction of each image left un-replaced, as in the
    reference code. One box and one ``lam`` per batch.

    Example:
        >>> images = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
        >>> torch.manual_seed(0) and None
        >>> mixed, info = CutMix().mix_images(images, torch.tensor([1, 0]), lam=0.75)
        >>> info.lam == 1 - float(mixed[0].mean())  # the pasted fraction comes from the partner
        True

    """

    def mix_images(self, images: Tensor, perm: Tensor, lam: float) -> tuple[Tensor, MixInfo]:
        """Paste one box of the partners into the batch and adjust ``lam`` to the pasted area."""
        height, width = images.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        mixed = images.clone()
        mixed[..., y0:y1, x0:x1] = images[perm][..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
        return mixed, MixInfo(perm=perm, lam=lam)
