"""The training objective of the task modules, picked and checked in one place.

``ImageClassifier``, ``LanguageModel`` and ``Translator`` take the same objective arguments (``label_smoothing``,
``skd`` with ``sigma`` / ``skd_lambda`` / ``sigma_update_every``, ``embedding_noise_std``) plus the callbacks of the
trainer (``SelfKDCallback``, ``SKDAlphaScheduler``). :func:`build_objective` turns the arguments into one
:class:`Objective` when the module is built, refusing the combinations no paper defines; the module's ``setup``
hands the trainer's callbacks to :meth:`Objective.check_callbacks`, and its ``training_step`` calls
:meth:`Objective.loss`:

* :class:`CrossEntropy`: through :func:`~lightning_skd.self_kd_loss` where the module supports Self-KD, so a
  :class:`~lightning_skd.SelfKDCallback` turns it into Self-KD (Kim et al.); plain cross-entropy otherwise;
* :class:`LabelSmoothing`: ``torch.nn.functional.cross_entropy(label_smoothing=ε)``;
* :class:`EmbeddingSKD`: :class:`~lightning_skd.losses.EmbeddingSKDLoss` (Hahn & Choi, Eq. 12 / 11) with the module's
  ``output_embedding``, its ``alpha`` driven by a :class:`~lightning_skd.callbacks.SKDAlphaScheduler`.

+Noise (``embedding_noise_std``, Gaussian noise on the decoder-input word embeddings in training) combines with any
of them: :meth:`Objective.noise_std` is the standard deviation the module's forward applies.

Label smoothing, Self-KD and SKD each replace the hard target; the papers define no combination of two of them, so
label smoothing with SKD is refused by :func:`build_objective`, and label smoothing or SKD with a ``SelfKDCallback``
by :meth:`Objective.check_callbacks`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd._lightning import pl
from lightning_skd.callbacks.self_kd import SelfKDCallback, self_kd_loss
from lightning_skd.callbacks.skd_alpha_scheduler import SKDAlphaScheduler
from lightning_skd.functional.soft_targets import hard_target_cross_entropy
from lightning_skd.losses.embedding_skd import EmbeddingSKDLoss
from lightning_skd.regularizers.mixing import MixInfo

__all__ = [
    "OBJECTIVE_ARGUMENTS",
    "CrossEntropy",
    "EmbeddingSKD",
    "LabelSmoothing",
    "Objective",
    "build_objective",
    "objective_from_hparams",
]

#: The constructor arguments of a task module that :func:`objective_from_hparams` hands to :func:`build_objective`.
OBJECTIVE_ARGUMENTS = (
    "label_smoothing",
    "skd",
    "sigma",
    "skd_lambda",
    "sigma_update_every",
    "embedding_noise_std",
    "ignore_index",
)


class Objective:
    """A training objective of a task module (``owner``, the class name its error messages start with).

    Call ``objective.loss(module, logits, target, mix=None)`` in ``training_step``: the scalar loss, the mean over
    the samples (or the non-padding tokens).

    Args:
        owner: The module's class name, for error messages.
        ignore_index: Target value of padding.
        embedding_noise_std: Std of the +Noise Gaussian noise on decoder-input embeddings (0: off).

    """

    #: The SKD loss module (:class:`EmbeddingSKD` only), for the task module to register as its ``skd_loss``.
    skd_loss: EmbeddingSKDLoss | None = None

    def __init__(self, owner: str, ignore_index: int = IGNORE_INDEX, embedding_noise_std: float = 0.0) -> None:
        self.owner = owner
        self.ignore_index = ignore_index
        self.embedding_noise_std = float(embedding_noise_std)

    def loss(self, module: pl.LightningModule, logits: Tensor, target: Tensor, mix: MixInfo | None = None) -> Tensor:
        """The loss of ``logits`` ``(B, C)`` or ``(B, T, V)`` for ``target`` ``(B,)`` or ``(B, T)``."""
        raise NotImplementedError

    def check_callbacks(self, callbacks: Sequence[Any]) -> None:
        """Refuse, in ``setup("fit")``, trainer callbacks that contradict the objective (none by default)."""

    def log_statistics(self, module: pl.LightningModule, batch_size: int) -> None:
        """Log the objective's own per-step values after a call (none by default)."""

    def noise_std(self, training: bool) -> float:
        """Std of the +Noise embedding noise the module's forward applies: ``embedding_noise_std`` in training only."""
        return self.embedding_noise_std if training else 0.0

    def _refuse_self_kd(self, callbacks: Sequence[Any], reason: str) -> None:
        if any(isinstance(cb, SelfKDCallback) for cb in callbacks):
            raise ValueError(reason)


class CrossEntropy(Objective):
    """Cross-entropy on the hard targets; Self-KD with a ``SelfKDCallback`` where the module supports it.

    With ``self_kd=True`` the loss is :func:`~lightning_skd.self_kd_loss` (plain cross-entropy without the callback,
    CutMix / Mixup targets mixed with ``mix``; token padding at the callback's ``ignore_index``, :data:`IGNORE_INDEX`
    without one); with ``self_kd=False`` it is plain cross-entropy (padding at ``ignore_index``) and a
    ``SelfKDCallback`` is refused.
    """

    def __init__(self, owner: str, self_kd: bool = True, **kwargs: Any) -> None:
        super().__init__(owner, **kwargs)
        self.self_kd = self_kd

    def loss(self, module: pl.LightningModule, logits: Tensor, target: Tensor, mix: MixInfo | None = None) -> Tensor:
        """Self-KD / cross-entropy loss of a batch."""
        if self.self_kd:
            return self_kd_loss(module, logits, target, mix=mix)
        if mix is not None:
            raise ValueError(f"{self.owner}: mixed batches (CutMix / Mixup) need an objective with self_kd=True")
        return hard_target_cross_entropy(logits, target, self.ignore_index)

    def check_callbacks(self, callbacks: Sequence[Any]) -> None:
        """Refuse a ``SelfKDCallback`` if this module's loss does not go through ``self_kd_loss``."""
        if not self.self_kd:
            self._refuse_self_kd(
                callbacks,
                f"{self.owner} does not train with lightning_skd.self_kd_loss, so SelfKDCallback cannot work with it; "
                "remove the callback",
            )


class LabelSmoothing(Objective):
    """Label-smoothed cross-entropy, ``(1 - ε) * CE + ε * mean_v(-log p_v)`` (the target mass spread over all classes).

    With ``mix`` (CutMix / Mixup) the loss is ``lam * LS-CE(y) + (1 - lam) * LS-CE(y_perm)``, the same pairs and
    weight as the images.
    """

    def __init__(self, owner: str, epsilon: float, **kwargs: Any) -> None:
        super().__init__(owner, **kwargs)
        self.epsilon = epsilon

    def loss(self, module: pl.LightningModule, logits: Tensor, target: Tensor, mix: MixInfo | None = None) -> Tensor:
        """Label-smoothed cross-entropy of a batch (mean over samples or non-padding tokens)."""
        loss = hard_target_cross_entropy(logits, target, self.ignore_index, label_smoothing=self.epsilon)
        if mix is None:
            return loss
        partner = hard_target_cross_entropy(logits, target[mix.perm], self.ignore_index, label_smoothing=self.epsilon)
        return mix.lam * loss + (1.0 - mix.lam) * partner

    def check_callbacks(self, callbacks: Sequence[Any]) -> None:
        """Refuse a ``SelfKDCallback``: both soften the targets."""
        self._refuse_self_kd(
            callbacks,
            f"{self.owner}(label_smoothing={self.epsilon}) and SelfKDCallback both soften the targets; use one of them "
            "(label_smoothing=0.0 for Self-KD)",
        )


class EmbeddingSKD(Objective):
    """SKD (Hahn & Choi): :class:`~lightning_skd.losses.EmbeddingSKDLoss` with ``module.output_embedding``.

    The loss module is ``self.skd_loss``; the task module registers it as its ``skd_loss`` submodule, so that its
    ``alpha`` / ``sigma`` buffers are saved in checkpoints and :class:`~lightning_skd.callbacks.SKDAlphaScheduler`
    finds it. ``log_statistics`` logs ``skd/q_n`` and ``skd/mismatch``.
    """

    def __init__(
        self,
        owner: str,
        sigma: float | Literal["auto"] = 0.1,
        skd_lambda: float | None = None,
        sigma_update_every: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(owner, **kwargs)
        self.skd_loss = EmbeddingSKDLoss(
            sigma=sigma,
            lam=skd_lambda,
            alpha=0.0,
            ignore_index=self.ignore_index,
            sigma_update_every=sigma_update_every,
        )

    def loss(self, module: pl.LightningModule, logits: Tensor, target: Tensor, mix: MixInfo | None = None) -> Tensor:
        """Eq. (12) (Eq. (11) with ``skd_lambda``) of a batch, mean over non-padding tokens."""
        if mix is not None:
            raise ValueError(f"{self.owner}: SKD is defined for unmixed targets, got a mixed batch (CutMix / Mixup)")
        return self.skd_loss(logits, target, module.output_embedding, step=module.global_step)

    def check_callbacks(self, callbacks: Sequence[Any]) -> None:
        """Refuse a ``SelfKDCallback`` and require an ``SKDAlphaScheduler``."""
        self._refuse_self_kd(
            callbacks,
            f"{self.owner}(skd=True) and SelfKDCallback both replace the hard target and no paper defines their "
            "combination; use one of them",
        )
        if not any(isinstance(cb, SKDAlphaScheduler) for cb in callbacks):
            raise ValueError(
                f"{self.owner}: skd=True needs an SKDAlphaScheduler in trainer.callbacks to drive alpha (Algorithm 1), "
                "got none"
            )

    def log_statistics(self, module: pl.LightningModule, batch_size: int) -> None:
        """Log ``skd/q_n`` (mean ``q_n`` over mismatched tokens) and ``skd/mismatch`` of the last call, per step."""
        for name, value in (("q_n", self.skd_loss.last_q_n), ("mismatch", self.skd_loss.last_mismatch)):
            module.log(f"skd/{name}", value, on_step=True, on_epoch=False, batch_size=batch_size)


def build_objective(
    owner: str,
    *,
    label_smoothing: float = 0.0,
    skd: bool = False,
    sigma: float | Literal["auto"] = 0.1,
    skd_lambda: float | None = None,
    sigma_update_every: int = 1000,
    embedding_noise_std: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
    self_kd: bool = True,
) -> Objective:
    """Check a module's objective arguments and return its :class:`Objective`.

    Args:
        owner: The module's class name, for error messages.
        label_smoothing: ``ε`` of label smoothing, in ``[0, 1)`` (0: off).
        skd: Train with :class:`~lightning_skd.losses.EmbeddingSKDLoss`.
        sigma: ``σ`` of Eq. (8) or ``"auto"`` (with ``skd``).
        skd_lambda: ``λ`` of Eq. (11); ``None`` for Eq. (12) (with ``skd``).
        sigma_update_every: Steps between ``sigma="auto"`` recomputations (with ``skd``).
        embedding_noise_std: Std of the +Noise Gaussian noise, a finite float ``>= 0`` (0: off).
        ignore_index: Target value of padding.
        self_kd: Whether the module's batches suit :class:`~lightning_skd.SelfKDCallback` (its plain cross-entropy
            then goes through :func:`~lightning_skd.self_kd_loss`).

    Raises:
        ValueError: On ``label_smoothing`` outside ``[0, 1)``, a negative or non-finite ``embedding_noise_std``, a bad
            SKD argument, or label smoothing together with SKD.

    Example:
        >>> build_objective("Translator", label_smoothing=0.1).epsilon
        0.1
        >>> type(build_objective("LanguageModel", skd=True, embedding_noise_std=0.1)).__name__
        'EmbeddingSKD'

    """
    if not _is_real(label_smoothing) or not 0 <= label_smoothing < 1:
        raise ValueError(f"{owner}: `label_smoothing` must be a float in [0, 1), got {label_smoothing!r}")
    if not _is_real(embedding_noise_std) or embedding_noise_std < 0:
        raise ValueError(f"{owner}: `embedding_noise_std` must be a finite float >= 0, got {embedding_noise_std!r}")
    if skd and label_smoothing > 0:
        raise ValueError(
            f"{owner}: label_smoothing={label_smoothing} and skd=True both replace the hard target and no paper "
            "defines their combination; use one of them"
        )
    common = {"ignore_index": ignore_index, "embedding_noise_std": embedding_noise_std}
    if skd:
        return EmbeddingSKD(owner, sigma=sigma, skd_lambda=skd_lambda, sigma_update_every=sigma_update_every, **common)
    if label_smoothing > 0:
        return LabelSmoothing(owner, label_smoothing, **common)
    return CrossEntropy(owner, self_kd=self_kd, **common)


def objective_from_hparams(module: pl.LightningModule, **options: Any) -> Objective:
    """:func:`build_objective` from the module's saved hyper-parameters (those named in :data:`OBJECTIVE_ARGUMENTS`).

    Call it after ``save_hyperparameters()``; error messages name ``type(module).__name__``. ``options`` (e.g.
    ``self_kd=False``) are passed on.
    """
    arguments = {name: module.hparams[name] for name in OBJECTIVE_ARGUMENTS if name in module.hparams}
    return build_objective(type(module).__name__, **arguments, **options)


def _is_real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
