"""``LanguageModel``: the RNNLM baseline of Hahn & Choi (2019), Sec. 4.2, with optional +Noise and +SKD."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd._lightning import LightningModule, LRSchedulerCallable, OptimizerCallable, warn_if_mixed
from lightning_skd.functional.soft_targets import hard_target_cross_entropy
from lightning_skd.metrics.sentence_nll import SentenceNLL
from lightning_skd.models.evaluation_logging import log_evaluation
from lightning_skd.objectives import objective_from_hparams

__all__ = ["LanguageModel"]


class LanguageModel(LightningModule):
    """Word-level LSTM language model trained on sentences, with the paper's +Noise and +SKD options.

    Architecture (Sec. 4.2): word embedding (``embedding_dim``, the paper: 500) -> ``num_layers`` LSTM layers
    (``hidden_size``, the paper: one layer of 400) -> one feed-forward layer with ReLU (``ff_size``) -> linear layer
    to the vocabulary and softmax. The softmax layer's weight ``W`` (``V x ff_size``) is the output word embedding
    used by SKD. With ``tie_weights`` it is the input embedding itself, so ``ff_size`` must equal ``embedding_dim``.

    * **+Noise**: during training only, Gaussian noise of std ``embedding_noise_std`` is added to the word embeddings
      of the input tokens (the target-side / decoder-input embeddings of an LM).
    * **+SKD**: the training loss is :class:`~lightning_skd.losses.EmbeddingSKDLoss` (Eq. 12, or Eq. 11 with
      ``skd_lambda``) with ``W`` the softmax weight; its ``alpha`` must be driven by a
      :class:`~lightning_skd.callbacks.SKDAlphaScheduler` in ``trainer.callbacks`` (checked in ``setup``).

    Batches are :class:`~lightning_skd.data.text_lm.LMBatch` ``(inputs (B, T), targets (B, T), lengths (B,),
    index (B,))`` with padded targets equal to ``ignore_index``. Logged: ``train/loss`` (per-token mean of the
    training objective), ``skd/q_n`` and ``skd/mismatch`` (with SKD), and on validation / test
    ``{val,test}/sentence_nll`` (sum of token NLLs per sentence, averaged over sentences: the paper's metric) and
    ``{val,test}/ppl``, global under DDP. ``predict`` returns each sentence's NLL, token count and index.

    Args:
        vocab_size: ``V``; ``None`` takes it from ``trainer.datamodule.vocab_size`` in ``setup`` (and stores it in the
            hyper-parameters so checkpoints reload without the data).
        embedding_dim: Word-embedding size.
        hidden_size: LSTM units.
        num_layers: LSTM layers.
        ff_size: Units of the ReLU feed-forward layer; ``None``: ``embedding_dim`` if tied, else ``hidden_size``.
        dropout: Dropout on the embeddings, between LSTM layers and after the LSTM (0: none, as in the paper).
        tie_weights: Share the input embedding and the softmax weight.
        embedding_noise_std: Std of the +Noise Gaussian noise (0: off).
        skd: Train with ``EmbeddingSKDLoss`` instead of cross-entropy.
        sigma: ``sigma`` of Eq. (8) (the paper: 0.1) or ``"auto"``.
        skd_lambda: ``lambda`` of Eq. (11); ``None`` for Eq. (12).
        sigma_update_every: Steps between ``sigma="auto"`` recomputations.
        ignore_index: Target value of padding.
        optimizer: Optimizer factory (from YAML: ``class_path`` / ``init_args``); default Adam, lr 1e-3.
        lr_scheduler: Optional LR-scheduler factory.
        lr_scheduler_monitor: Metric a ``ReduceLROnPlateau`` scheduler watches.

    Raises:
        ValueError: On a bad size, ``dropout``, ``embedding_noise_std``, tied sizes that differ, a bad SKD argument
            (in ``__init__``); in ``setup``, if ``vocab_size`` cannot be found, ``skd`` is on without an
            ``SKDAlphaScheduler`` callback, or a ``SelfKDCallback`` is attached (these batches do not suit it).

    """

    def __init__(
        self,
        vocab_size: int | None = None,
        embedding_dim: int = 500,
        hidden_size: int = 400,
        num_layers: int = 1,
        ff_size: int | None = None,
        dropout: float = 0.0,
        tie_weights: bool = False,
        embedding_noise_std: float = 0.0,
        skd: bool = False,
        sigma: float | Literal["auto"] = 0.1,
        skd_lambda: float | None = None,
        sigma_update_every: int = 1000,
        ignore_index: int = IGNORE_INDEX,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_monitor: str = "val/sentence_nll",
    ) -> None:
        super().__init__()
        warn_if_mixed(type(self).__name__)
        for name, value in (
            ("embedding_dim", embedding_dim),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
            ("ff_size", ff_size),
            ("vocab_size", vocab_size),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"LanguageModel: `{name}` must be an integer >= 1, got {value!r}")
        if vocab_size is not None and vocab_size < 2:
            raise ValueError(f"LanguageModel: `vocab_size` must be an integer >= 2, got {vocab_size!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"LanguageModel: `dropout` must be a float in [0, 1), got {dropout!r}")
        if ff_size is None:
            ff_size = embedding_dim if tie_weights else hidden_size
        if tie_weights and ff_size != embedding_dim:
            raise ValueError(
                f"LanguageModel: with tie_weights the feed-forward layer must project to the embedding size, "
                f"expected ff_size = embedding_dim = {embedding_dim}, got ff_size = {ff_size}"
            )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.hparams["ff_size"] = ff_size
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        # Cross-entropy or SKD, +Noise: built (and its arguments checked) here; it does not depend on V. The batches
        # (LMBatch) carry no layout SelfKDCallback reads, so plain cross-entropy does not go through self_kd_loss.
        self.training_objective = objective_from_hparams(self, self_kd=False)
        self.skd_loss = self.training_objective.skd_loss  # a submodule: its buffers go to checkpoints
        self.val_metric = SentenceNLL()
        self.test_metric = SentenceNLL()
        self.embedding: nn.Embedding | None = None
        if vocab_size is not None:
            self._build(vocab_size)

    def _build(self, vocab_size: int) -> None:
        hp = self.hparams
        self.embedding = nn.Embedding(vocab_size, hp.embedding_dim)  # (V, E)
        self.lstm = nn.LSTM(
            hp.embedding_dim,
            hp.hidden_size,
            num_layers=hp.num_layers,
            batch_first=True,
            dropout=hp.dropout if hp.num_layers > 1 else 0.0,
        )
        self.feed_forward = nn.Linear(hp.hidden_size, hp.ff_size)
        self.decoder = nn.Linear(hp.ff_size, vocab_size)  # weight (V, ff_size): the output word embedding W
        self.drop = nn.Dropout(hp.dropout)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if hp.tie_weights:
            self.decoder.weight = self.embedding.weight

    @property
    def output_embedding(self) -> Tensor:
        """The softmax layer's weight ``W``, shape ``(V, ff_size)`` (the input embedding when tied)."""
        return self.decoder.weight

    @override
    def setup(self, stage: str) -> None:
        """Build the layers once ``V`` is known and check that SKD has its ``alpha`` scheduler."""
        if self.embedding is None:
            datamodule = getattr(self.trainer, "datamodule", None)
            vocab_size = getattr(datamodule, "vocab_size", None)
            if vocab_size is None:
                raise ValueError(
                    "LanguageModel: `vocab_size` is None and the trainer has no datamodule with a `vocab_size`; "
                    "expected an integer vocab_size or a datamodule such as TextLMDataModule, got neither"
                )
            self.hparams["vocab_size"] = int(vocab_size)
            self._build(int(vocab_size))
        if stage == "fit":
            self.training_objective.check_callbacks(self.trainer.callbacks)

    @override
    def forward(self, inputs: Tensor) -> Tensor:
        """Return next-token logits ``(B, T, V)`` for token indices ``inputs`` ``(B, T)``."""
        if self.embedding is None:
            raise RuntimeError("LanguageModel: the layers are not built yet; give vocab_size or run setup()")
        embedded = self.embedding(inputs)  # (B, T, E)
        noise_std = self.training_objective.noise_std(self.training)  # +Noise: in training only
        if noise_std > 0:
            embedded = embedded + torch.randn_like(embedded) * noise_std
        hidden, _ = self.lstm(self.drop(embedded))  # (B, T, H)
        features = F.relu(self.feed_forward(self.drop(hidden)))  # (B, T, ff_size)
        return self.decoder(features)  # (B, T, V)

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Cross-entropy (baseline / +Noise) or Eq. (12) (+SKD), averaged over non-padding tokens."""
        inputs, targets = batch[0], batch[1]
        logits = self(inputs)  # (B, T, V)
        loss = self.training_objective.loss(self, logits, targets)
        self.training_objective.log_statistics(self, batch_size=inputs.shape[0])
        # The epoch value is the batch-weighted mean over all processes, synchronised once at the end of the epoch.
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=inputs.shape[0], sync_dist=True
        )
        return loss

    def _token_nll(self, inputs: Tensor, targets: Tensor) -> Tensor:
        return hard_target_cross_entropy(
            self(inputs), targets, self.hparams.ignore_index, reduction="none"
        )  # (B, T), 0 at padding

    def _evaluate(self, batch: Any, metric: SentenceNLL) -> None:
        inputs, targets = batch[0], batch[1]
        metric.update(self._token_nll(inputs, targets), targets != self.hparams.ignore_index)

    def _log_metric(self, stage: str, metric: SentenceNLL) -> None:
        values = dict(zip((f"{stage}/sentence_nll", f"{stage}/ppl"), metric.compute(), strict=True))
        log_evaluation(self, values, prog_bar=values, reset=[metric])

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Accumulate token NLLs of the validation sentences."""
        self._evaluate(batch, self.val_metric)

    @override
    def on_validation_epoch_end(self) -> None:
        """Log ``val/sentence_nll`` and ``val/ppl``."""
        self._log_metric("val", self.val_metric)

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Accumulate token NLLs of the test sentences."""
        self._evaluate(batch, self.test_metric)

    @override
    def on_test_epoch_end(self) -> None:
        """Log ``test/sentence_nll`` and ``test/ppl``."""
        self._log_metric("test", self.test_metric)

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Per-sentence NLL ``(B,)`` (nats, ``<eos>`` included), token counts ``(B,)`` and sentence indices ``(B,)``."""
        inputs, targets, _, index = batch
        return {
            "sentence_nll": self._token_nll(inputs, targets).sum(dim=1),
            "tokens": (targets != self.hparams.ignore_index).sum(dim=1),
            "index": index,
        }

    @override
    def configure_optimizers(self) -> Any:
        """Build the optimizer (and LR scheduler) from the factories given to ``__init__``."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.lr_scheduler_monitor},
        }
