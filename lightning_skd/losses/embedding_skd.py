"""``EmbeddingSKDLoss``: the self-knowledge-distillation loss of Hahn & Choi (2019), Eqs. (8), (11), (12)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd.functional.embedding_skd import (
    Reduction,
    check_reduction,
    check_sigma,
    check_unit_interval,
    embedding_skd_loss_with_stats,
    sigma_from_nearest_neighbours,
)

__all__ = ["EmbeddingSKDLoss"]


class EmbeddingSKDLoss(nn.Module):
    """SKD loss ``J = -(1 - alpha*lam*q_n) log p_t - alpha*lam*q_n log p_n`` with ``q_n`` from the embedding space.

    ``n`` is the argmax of the current logits (ties: the lowest index) and
    ``q_n = min(exp(-sigma * ||w_t - w_n||_2), q_max)`` (Eq. 8, Euclidean distance, not squared) with ``w`` the rows of
    the output word-embedding matrix ``W`` passed to :meth:`forward`. Where ``n == t`` the loss is plain
    cross-entropy. ``q_n`` is treated as a *target*: it is computed under ``torch.no_grad`` from a detached ``W``, so
    no gradient flows through it (as the teacher probabilities of knowledge distillation); ``W`` still receives its
    ordinary gradient through the logits it produces. No ``(N, V)`` tensor beyond the logits' own gradient is
    allocated (see :mod:`lightning_skd.functional.embedding_skd`).

    State (buffers, saved in checkpoints with the model):

    * ``alpha``: the schedule weight of Algorithm 1. Set it with :meth:`set_alpha`, normally from the
      :class:`~lightning_skd.callbacks.SKDAlphaScheduler` callback, which follows Algorithm 1.
    * ``sigma``: the scale of Eq. (8). With ``sigma="auto"`` it is ``ln(1 / sigma_auto_q) / d_nn`` where ``d_nn`` is
      the mean over words of the Euclidean distance to the nearest other word in ``W`` (so with the default
      ``sigma_auto_q = 0.5`` the average nearest neighbour gets exactly the clip value ``q_n = 0.5``), computed in
      chunks of ``chunk_size`` rows (memory ``O(chunk_size * V)``) on the first call and then every
      ``sigma_update_every`` steps of training.
    * ``sigma_step`` (the step at which ``sigma`` was last computed, ``-1``: never) and ``num_calls`` (training-mode
      calls so far, the step used when :meth:`forward` gets no ``step``) are Python ints kept in the module's
      ``state_dict`` as extra state, so reading them never synchronises with the device.

    After each call ``last_q_n`` (mean ``q_n`` over mismatched non-padding positions) and ``last_mismatch`` (fraction
    of non-padding positions with ``n != t``) hold detached 0-dim tensors for logging (the paper's Fig. 3a).

    Args:
        sigma: Scale of Eq. (8) (the paper: 0.1), a float ``> 0``, or ``"auto"``.
        lam: ``lambda`` of Eq. (11) in ``[0, 1]``; ``None`` gives Eq. (12).
        alpha: Initial ``alpha`` in ``[0, 1]``. Defaults to 1 (the full Eq. (10) objective) for use without a
            scheduler; :class:`~lightning_skd.callbacks.SKDAlphaScheduler` overwrites it every step.
        ignore_index: Target value marking padding.
        reduction: ``"none"``, ``"mean"`` (over non-padding positions), ``"sum"`` or ``"sequence"`` (sum over the last
            target axis: the per-sentence loss, shape ``(B,)`` for ``(B, T)`` targets).
        q_max: Clip of ``q_n`` (the paper: 0.5), in ``(0, 1]``.
        sigma_update_every: With ``sigma="auto"``, recompute ``sigma`` every this many steps (``>= 1``).
        sigma_auto_q: With ``sigma="auto"``, the ``q`` at the mean nearest-neighbour distance, in ``(0, 1)``.
        chunk_size: Rows per chunk of the nearest-neighbour computation (``>= 1``).

    Raises:
        ValueError: If an argument is out of range, naming it, the expected range and the value given.

    Example:
        >>> loss_fn = EmbeddingSKDLoss(sigma=0.1)
        >>> logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]]])  # (B=1, T=2, V=3)
        >>> targets = torch.tensor([[1, -100]])  # the second position is padding
        >>> weight = torch.tensor([[0.0, 0.0], [3.0, 4.0], [30.0, 40.0]])  # (V=3, d=2)
        >>> round(float(loss_fn(logits, targets, weight)), 4)
        0.9076
        >>> float(loss_fn.last_q_n), float(loss_fn.last_mismatch)
        (0.5, 1.0)
        >>> loss_fn.set_alpha(0.0)  # plain cross-entropy: -log p_1
        >>> round(float(loss_fn(logits, targets, weight)), 4)
        1.4076

    """

    alpha: Tensor
    sigma: Tensor

    def __init__(
        self,
        sigma: float | Literal["auto"] = 0.1,
        lam: float | None = None,
        alpha: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
        reduction: Reduction = "mean",
        q_max: float = 0.5,
        sigma_update_every: int = 1000,
        sigma_auto_q: float = 0.5,
        chunk_size: int = 1024,
    ) -> None:
        super().__init__()
        if isinstance(sigma, str):
            if sigma != "auto":
                raise ValueError(f"sigma must be a finite float > 0 or 'auto', got {sigma!r}")
        else:
            check_sigma(sigma)
        if lam is not None:
            check_unit_interval("lam", lam)
        check_unit_interval("alpha", alpha)
        check_reduction(reduction)
        check_unit_interval("q_max", q_max, allow_zero=False)
        for name, value in (("sigma_update_every", sigma_update_every), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(sigma_auto_q, bool) or not isinstance(sigma_auto_q, (int, float)) or not 0 < sigma_auto_q < 1:
            raise ValueError(f"sigma_auto_q must be a float in (0, 1), got {sigma_auto_q!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an integer, got {ignore_index!r}")

        self.auto_sigma = sigma == "auto"
        self.lam = lam
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.q_max = q_max
        self.sigma_update_every = sigma_update_every
        self.sigma_auto_q = sigma_auto_q
        self.chunk_size = chunk_size
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.register_buffer("sigma", torch.tensor(math.nan if self.auto_sigma else float(sigma)))
        self.sigma_step = -1
        self.num_calls = 0
        self.last_q_n: Tensor | None = None
        self.last_mismatch: Tensor | None = None
        self.clip_counts = torch.zeros(2)  # (q_n at the clip, mismatched) summed over training calls since a reset

    @override
    def extra_repr(self) -> str:
        """Show ``sigma``, ``lam``, ``reduction`` and ``ignore_index``."""
        sigma = "'auto'" if self.auto_sigma else f"{float(self.sigma):g}"
        return f"sigma={sigma}, lam={self.lam}, reduction={self.reduction!r}, ignore_index={self.ignore_index}"

    @override
    def get_extra_state(self) -> dict[str, int]:
        """Return the Python-side state (``sigma_step``, ``num_calls``) for the ``state_dict``."""
        return {"sigma_step": self.sigma_step, "num_calls": self.num_calls}

    @override
    def set_extra_state(self, state: dict[str, int]) -> None:
        """Restore the state written by :meth:`get_extra_state`."""
        self.sigma_step = int(state["sigma_step"])
        self.num_calls = int(state["num_calls"])

    def set_alpha(self, alpha: float) -> None:
        """Set ``alpha`` (in ``[0, 1]``) in place, without a device synchronisation."""
        check_unit_interval("alpha", alpha)
        self.alpha.fill_(float(alpha))

    @torch.no_grad()
    def update_sigma(self, weight: Tensor, step: int | None = None) -> float:
        """Recompute ``sigma`` from ``weight`` with the ``sigma="auto"`` rule now, and return it.

        Args:
            weight: Output word-embedding matrix ``(V, d)``.
            step: Step to record as the time of this update (defaults to ``num_calls``).

        Raises:
            ValueError: If the loss was not built with ``sigma="auto"``, or ``W`` is degenerate.

        """
        if not self.auto_sigma:
            raise ValueError(f"update_sigma needs sigma='auto', got sigma={float(self.sigma)}")
        sigma = sigma_from_nearest_neighbours(weight, self.sigma_auto_q, self.chunk_size)
        self.sigma.fill_(sigma)
        self.sigma_step = self.num_calls if step is None else int(step)
        return sigma

    def _sigma_due(self, step: int) -> bool:
        last = self.sigma_step
        return last < 0 or (self.training and step - last >= self.sigma_update_every)

    @override
    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor, step: int | None = None) -> Tensor:
        """Compute the loss.

        Args:
            logits: ``(..., V)`` unnormalised scores, e.g. ``(B, T, V)``.
            targets: ``(...)`` target indices, ``ignore_index`` at padding.
            weight: ``(V, d)`` output word-embedding matrix (the softmax layer's weight).
            step: Current optimizer step (e.g. ``trainer.global_step``) for the ``sigma="auto"`` schedule; defaults
                to the number of training-mode calls so far. Unused with a fixed ``sigma``.

        Returns:
            The loss reduced as ``reduction`` says.

        """
        if self.auto_sigma:
            current = self.num_calls if step is None else step
            if self._sigma_due(current):
                self.update_sigma(weight, current)
        if self.training:
            self.num_calls += 1
        out = embedding_skd_loss_with_stats(
            logits,
            targets,
            weight,
            sigma=self.sigma,
            alpha=self.alpha,
            lam=self.lam,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            q_max=self.q_max,
        )
        self.last_q_n, self.last_mismatch = out.q_n, out.mismatch
        if self.training:
            counts = torch.stack([out.q_n_clipped, out.num_mismatched]).to(self.clip_counts.device, torch.float64)
            self.clip_counts = self.clip_counts.to(counts) + counts
        return out.loss

    def reset_clip_counts(self) -> None:
        """Start counting ``q_n`` at the clip afresh (e.g. at an epoch's start)."""
        self.clip_counts = torch.zeros(2, dtype=torch.float64, device=self.alpha.device)
