"""``Translator``: an encoder-decoder translation model trained with CE, label smoothing, Self-KD or SKD (+Noise)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd._lightning import LRSchedulerCallable, OptimizerCallable, pl, rank_zero_info, warn_if_mixed
from lightning_skd.callbacks.prediction_writer import PredictionWriter
from lightning_skd.functional.soft_targets import hard_target_cross_entropy
from lightning_skd.models.evaluation_logging import log_evaluation
from lightning_skd.models.seq2seq.decoding import Hypotheses, beam_search, greedy_decode
from lightning_skd.models.temperature_scaled_metrics import TemperatureScaledMetrics
from lightning_skd.models.translation_evaluation import TranslationEvaluation
from lightning_skd.objectives import _is_real, objective_from_hparams

__all__ = ["Translator"]

#: What ``setup`` reads from ``trainer.datamodule`` when the corresponding argument is ``None``.
_DATA_ATTRIBUTES = ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id")


class Translator(pl.LightningModule):
    """Translation with the papers' objectives: cross-entropy, label smoothing, token-level Self-KD, SKD, +Noise.

    The network is any :class:`~lightning_skd.models.seq2seq.Seq2Seq` (``TransformerSeq2Seq``,
    ``AttentionLSTMSeq2Seq``), given as a factory called with ``(src_vocab_size, tgt_vocab_size, pad_id)``: in YAML
    a ``class_path`` with the architecture's ``init_args`` but without those three (LightningCLI passes a partial),
    in Python e.g. ``functools.partial(TransformerSeq2Seq, d_model=512)``. Vocabulary sizes and special ids left
    ``None`` are read from ``trainer.datamodule`` (:class:`~lightning_skd.data.ParallelTextDataModule`) in ``setup``
    and stored in the hyper-parameters. The factory itself is not saved in checkpoints: the CLI rebuilds it from the
    config; in Python reload with ``Translator.load_from_checkpoint(path, model=factory)``.

    Training objective (mean over the batch's non-padding target tokens):

    * default: cross-entropy through :func:`~lightning_skd.self_kd_loss`, so a
      :class:`~lightning_skd.SelfKDCallback` in ``trainer.callbacks`` turns it into token-level Self-KD
      (Kim et al., Sec. 3.4; ``forward`` returns the teacher-forced logits its snapshot teacher needs);
    * ``label_smoothing=ε``: ``(1 - ε) * CE + ε * mean_v(-log p_v)``, the target mass spread uniformly over all V
      classes (``torch.nn.functional.cross_entropy(label_smoothing=ε)``; fairseq spreads it over the V - 1 other
      classes, a difference of ``ε / V`` in the target's weight);
    * ``skd=True``: :class:`~lightning_skd.losses.EmbeddingSKDLoss` (Hahn & Choi, Eq. 12) with the network's
      ``output_embedding``; its ``alpha`` is driven by a :class:`~lightning_skd.callbacks.SKDAlphaScheduler`, which
      ``setup`` requires;
    * ``embedding_noise_std=σ`` (+Noise): Gaussian noise on the decoder-input word embeddings, in training only.

    Label smoothing, Self-KD and SKD each replace the hard target; the papers define no combination of two of them,
    so label smoothing with SKD is refused in ``__init__``, and label smoothing or SKD with a ``SelfKDCallback`` in
    ``setup``. +Noise combines with any of them. (The same rules for every task module:
    :mod:`lightning_skd.objectives`.)

    Evaluation (``val`` / ``test``, all values global under DDP, see
    :class:`~lightning_skd.models.translation_evaluation.TranslationEvaluation`): ``loss`` and the token-level
    calibration metrics (``nll``, ``ece``, ``aurc``, ``eaurc``, ``top1_err``, ``top5_err``) under teacher forcing,
    and sacreBLEU corpus BLEU of the detokenised greedy output (``bleu``) and of beam search for every width in
    ``val_beam_sizes`` / ``test_beam_sizes`` (``bleu_beam<k>``), against ``datamodule.references(split)``. The
    sacreBLEU signature is printed once (rank 0). Validation runs greedy decoding only by default (cheap); test adds
    beam 5.

    Temperature scaling (:class:`~lightning_skd.callbacks.TemperatureScaling`): while ``temperature`` is a number
    (the callback sets it for the test, fitted on the teacher-forced :meth:`evaluation_logits` of the validation
    split), the test also reports ``loss`` and the token calibration metrics of ``logits / temperature`` under
    ``test_ts/``; BLEU is not rescored (greedy decoding does not depend on ``T``; beam search would).

    Predict: the hypotheses of greedy decoding (``predict_beam_size=1``) or beam search, as ``tokens`` (right-padded
    with ``pad_id``), ``lengths``, ``log_prob`` and ``index``; ``lightning-skd predict`` merges them in input order
    into ``predictions.pt`` (:class:`~lightning_skd.callbacks.PredictionWriter`), and this module then writes the
    detokenised ``hypotheses.txt`` next to it, one line per input in index order.

    Batches are dicts ``{"input": TranslationInput(source, source_lengths, target_input), "target": (B, T),
    "index": (B,)}`` with target padding ``-100`` (see ``lightning_skd.data.parallel_text``).

    Args:
        model: Factory ``(src_vocab_size, tgt_vocab_size, pad_id) -> Seq2Seq``.
        src_vocab_size: Source vocabulary size; ``None``: from the data module.
        tgt_vocab_size: Target vocabulary size; ``None``: from the data module.
        pad_id: Padding id of the inputs; ``None``: from the data module.
        bos_id: Beginning-of-sentence id (first decoder input); ``None``: from the data module.
        eos_id: End-of-sentence id; ``None``: from the data module.
        label_smoothing: ``ε`` of label smoothing (0: off; Kim et al.'s LS row uses 0.1).
        embedding_noise_std: Std of the +Noise Gaussian noise on decoder-input embeddings (0: off).
        skd: Train with ``EmbeddingSKDLoss``.
        sigma: ``σ`` of Eq. (8) or ``"auto"``.
        skd_lambda: ``λ`` of Eq. (11); ``None`` for Eq. (12).
        sigma_update_every: Steps between ``sigma="auto"`` recomputations.
        val_beam_sizes: Beam widths (>= 2) scored on validation besides greedy decoding.
        test_beam_sizes: Beam widths (>= 2) scored on test besides greedy decoding.
        predict_beam_size: Beam width of ``predict`` (1: greedy).
        length_penalty: GNMT length-penalty exponent of beam search.
        max_len_a: Maximum hypothesis length ``max_len_a * source_length + max_len_b``.
        max_len_b: See ``max_len_a``.
        bleu_tokenize: sacreBLEU tokenizer (``"13a"``: sacreBLEU's default, WMT's standard).
        n_bins: ECE bins.
        optimizer: Optimizer factory (YAML ``class_path`` / ``init_args``); default Adam, lr 1e-3.
        lr_scheduler: Optional LR-scheduler factory, e.g. :class:`~lightning_skd.optim.InverseSquareRootLR`.
        lr_scheduler_interval: ``"step"`` (after every optimizer step, for warm-up schedules) or ``"epoch"``.
        lr_scheduler_monitor: Metric a ``ReduceLROnPlateau`` scheduler watches.

    Raises:
        ValueError: On a bad argument or label smoothing together with SKD (``__init__``); in ``setup``: a missing
            vocabulary size / special id, a data module without ``decode_target`` / ``references``, SKD without an
            ``SKDAlphaScheduler``, label smoothing or SKD together with a ``SelfKDCallback``.

    """

    def __init__(
        self,
        model: Callable[[int, int, int], nn.Module],
        src_vocab_size: int | None = None,
        tgt_vocab_size: int | None = None,
        pad_id: int | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        label_smoothing: float = 0.0,
        embedding_noise_std: float = 0.0,
        skd: bool = False,
        sigma: float | Literal["auto"] = 0.1,
        skd_lambda: float | None = None,
        sigma_update_every: int = 1000,
        val_beam_sizes: Sequence[int] = (),
        test_beam_sizes: Sequence[int] = (5,),
        predict_beam_size: int = 1,
        length_penalty: float = 1.0,
        max_len_a: float = 1.5,
        max_len_b: float = 10.0,
        bleu_tokenize: str = "13a",
        n_bins: int = 15,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["step", "epoch"] = "step",
        lr_scheduler_monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        warn_if_mixed(type(self).__name__)
        if not callable(model) or isinstance(model, nn.Module):
            raise ValueError(
                "Translator: `model` must be a factory (src_vocab_size, tgt_vocab_size, pad_id) -> Seq2Seq, e.g. a "
                "class_path without those arguments in YAML or functools.partial(TransformerSeq2Seq, ...); "
                f"got {model!r}"
            )
        for name, value, low in (
            ("src_vocab_size", src_vocab_size, 2),
            ("tgt_vocab_size", tgt_vocab_size, 2),
            ("pad_id", pad_id, 0),
            ("bos_id", bos_id, 0),
            ("eos_id", eos_id, 0),
            ("predict_beam_size", predict_beam_size, 1),
            ("n_bins", n_bins, 1),
        ):
            _check_int(name, value, low, allow_none=name not in ("predict_beam_size", "n_bins"))
        for name, sizes in (("val_beam_sizes", val_beam_sizes), ("test_beam_sizes", test_beam_sizes)):
            if isinstance(sizes, (str, int)) or any(isinstance(k, bool) or not isinstance(k, int) for k in sizes):
                raise ValueError(f"Translator: `{name}` must be a list of integers >= 2, got {sizes!r}")
            if any(k < 2 for k in sizes) or len(set(sizes)) != len(sizes):
                raise ValueError(
                    f"Translator: `{name}` must hold distinct beam widths >= 2 (greedy decoding, width 1, is always "
                    f"scored as `bleu`), got {list(sizes)!r}"
                )
        for name, value in (("length_penalty", length_penalty), ("max_len_a", max_len_a), ("max_len_b", max_len_b)):
            if not _is_real(value) or (name != "length_penalty" and value < 0):
                raise ValueError(f"Translator: `{name}` must be a finite float (>= 0 for lengths), got {value!r}")
        if lr_scheduler_interval not in ("step", "epoch"):
            raise ValueError(
                f"Translator: `lr_scheduler_interval` must be 'step' or 'epoch', got {lr_scheduler_interval!r}"
            )
        self.save_hyperparameters(ignore=["model", "optimizer", "lr_scheduler"])
        self.training_objective = objective_from_hparams(self)  # CE / Self-KD, label smoothing or SKD; +Noise
        self.model_factory = model
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.skd_loss = self.training_objective.skd_loss  # a submodule: its buffers go to checkpoints
        self.model: nn.Module | None = None
        self._signature_logged = False
        self._references: dict[str, list[str]] = {}
        #: ``T`` of the ``test_ts/`` token metrics (set by TemperatureScaling for a test); ``None``: none.
        self.temperature: float | None = None
        if all(self.hparams[name] is not None for name in _DATA_ATTRIBUTES):
            self._build()

    # ----------------------------------------------------------------------------------------------------------------
    # building

    def _build(self) -> None:
        hp = self.hparams
        self.model = self.model_factory(hp.src_vocab_size, hp.tgt_vocab_size, hp.pad_id)
        for name in ("forward", "encode", "decode_step", "reorder", "output_embedding"):
            if not hasattr(self.model, name):
                raise ValueError(
                    f"Translator: `model` must build a Seq2Seq (forward, encode, decode_step, reorder, "
                    f"output_embedding), got a {type(self.model).__name__} without `{name}`"
                )
        common = {"num_classes": hp.tgt_vocab_size, "n_bins": hp.n_bins, "bleu_tokenize": hp.bleu_tokenize}
        self.val_metrics = TranslationEvaluation("val", beam_sizes=hp.val_beam_sizes, **common)
        self.test_metrics = TranslationEvaluation("test", beam_sizes=hp.test_beam_sizes, **common)
        self.test_ts_metrics = TemperatureScaledMetrics(self.test_metrics.calibration)

    @override
    def setup(self, stage: str) -> None:
        """Fill vocabulary sizes / special ids from the data module, build the network, check the objective."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.model is None:
            for name in _DATA_ATTRIBUTES:
                if self.hparams[name] is None:
                    value = getattr(datamodule, name, None)
                    if value is None:
                        raise ValueError(
                            f"Translator: `{name}` is None and the trainer has no datamodule with a `{name}`; expected "
                            f"an integer {name} or a datamodule such as ParallelTextDataModule, got neither"
                        )
                    self.hparams[name] = int(value)
            self._build()
        if stage in ("fit", "validate", "test", "predict"):
            missing = [name for name in ("decode_target", "references") if not hasattr(datamodule, name)]
            if missing:
                raise ValueError(
                    "Translator: evaluation and predict detokenise with `trainer.datamodule.decode_target` and score "
                    f"against `trainer.datamodule.references(split)`; the datamodule {type(datamodule).__name__} has "
                    f"no {' / '.join(missing)} (use ParallelTextDataModule)"
                )
        if stage == "fit":
            self.training_objective.check_callbacks(self.trainer.callbacks)

    # ----------------------------------------------------------------------------------------------------------------
    # training

    @override
    def forward(self, inputs: Any) -> Tensor:
        """Teacher-forced logits ``(B, T, V)`` of a ``TranslationInput`` (+Noise in training mode only)."""
        if self.model is None:
            raise RuntimeError("Translator: the network is not built yet; give the vocabulary sizes or run setup()")
        noise = self.training_objective.noise_std(self.training)
        return self.model(inputs.source, inputs.source_lengths, inputs.target_input, embedding_noise_std=noise)

    @property
    def output_embedding(self) -> Tensor:
        """The network's output word embedding ``(V, d)`` (the softmax weight SKD measures distances in)."""
        return self.model.output_embedding

    def objective(self, logits: Tensor, target: Tensor) -> Tensor:
        """The configured training loss of ``logits (B, T, V)`` for ``target (B, T)``, mean over non-padding tokens.

        SKD (Eq. 12) with ``skd``, label-smoothed cross-entropy with ``label_smoothing > 0``, otherwise
        :func:`~lightning_skd.self_kd_loss` (token-level Self-KD with a ``SelfKDCallback``, plain cross-entropy
        without).
        """
        return self.training_objective.loss(self, logits, target)

    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """The configured objective, averaged over the batch's non-padding target tokens."""
        target = batch["target"]  # (B, T), IGNORE_INDEX at padding
        logits = self(batch["input"])  # (B, T, V)
        tokens = int((target != IGNORE_INDEX).sum())
        loss = self.objective(logits, target)
        self.training_objective.log_statistics(self, batch_size=tokens)
        # Epoch value: token-weighted mean over all processes, synchronised once at the end of the epoch.
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=tokens, sync_dist=True)
        return loss

    # ----------------------------------------------------------------------------------------------------------------
    # evaluation

    def decode(self, inputs: Any, beam_size: int = 1) -> Hypotheses:
        """Greedy decoding (``beam_size=1``) or batched beam search of a ``TranslationInput``'s source."""
        hp = self.hparams
        common = {"bos_id": hp.bos_id, "eos_id": hp.eos_id, "max_len_a": hp.max_len_a, "max_len_b": hp.max_len_b}
        if beam_size == 1:
            return greedy_decode(self.model, inputs.source, inputs.source_lengths, **common)
        return beam_search(
            self.model,
            inputs.source,
            inputs.source_lengths,
            beam_size=beam_size,
            length_penalty=hp.length_penalty,
            **common,
        )

    def detokenize(self, tokens: Tensor, lengths: Tensor) -> list[str]:
        """Detokenised text of hypotheses ``tokens (B, L)`` with ``lengths (B,)``, via ``datamodule.decode_target``."""
        decode_target = self.trainer.datamodule.decode_target
        return [decode_target(row[:length].tolist()) for row, length in zip(tokens, lengths.tolist(), strict=True)]

    def evaluation_logits(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits ``(B, T, V)`` and targets ``(B, T)`` (padding ``-100``) of an evaluation batch."""
        return self(batch["input"]), batch["target"]

    def _evaluation_step(
        self, batch: dict[str, Any], metrics: TranslationEvaluation, split: str
    ) -> tuple[Tensor, Tensor]:
        inputs, index = batch["input"], batch["index"]
        logits, target = self.evaluation_logits(batch)  # (B, T, V), (B, T)
        token_nll = hard_target_cross_entropy(logits, target, reduction="none")  # (B, T), 0 at padding
        metrics.update_tokens(logits, target, token_nll[target != IGNORE_INDEX])
        references = self._split_references(split)
        batch_references = [references[i] for i in index.tolist()]
        for beam_size in (1, *metrics.beam_sizes):
            hypotheses = self.decode(inputs, beam_size)
            name = "bleu" if beam_size == 1 else f"bleu_beam{beam_size}"
            metrics.update_bleu(name, self.detokenize(hypotheses.tokens, hypotheses.lengths), batch_references)
        return logits, target

    def _split_references(self, split: str) -> list[str]:
        if split not in self._references:
            self._references[split] = list(self.trainer.datamodule.references(split))
        return self._references[split]

    def _log_metrics(self, metrics: TranslationEvaluation) -> None:
        if not self._signature_logged and not self.trainer.sanity_checking:
            rank_zero_info(f"Translator: sacreBLEU signature {metrics.signature}")
            self._signature_logged = True
        stage = metrics.stage
        log_evaluation(self, metrics.compute(), prog_bar={f"{stage}/bleu", f"{stage}/loss"}, reset=[metrics])

    @override
    def on_validation_epoch_start(self) -> None:
        """Reload the references (the data module may have been set up anew)."""
        self._references.pop("val", None)

    @override
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Token metrics under teacher forcing; BLEU of greedy (and ``val_beam_sizes``) decoding."""
        self._evaluation_step(batch, self.val_metrics, "val")

    @override
    def on_validation_epoch_end(self) -> None:
        """Log the ``val/*`` values."""
        self._log_metrics(self.val_metrics)

    @override
    def on_test_epoch_start(self) -> None:
        """Reload the references."""
        self._references.pop("test", None)

    @override
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Token metrics under teacher forcing (also of ``logits / temperature`` if set); BLEU of greedy and beams."""
        logits, target = self._evaluation_step(batch, self.test_metrics, "test")
        if self.temperature is not None:
            self.test_ts_metrics.update(logits, target, self.temperature)

    @override
    def on_test_epoch_end(self) -> None:
        """Log the ``test/*`` values (and the ``test_ts/*`` ones if ``temperature`` is set)."""
        self._log_metrics(self.test_metrics)
        if self.temperature is not None:
            log_evaluation(self, self.test_ts_metrics.compute(), reset=[self.test_ts_metrics])

    # ----------------------------------------------------------------------------------------------------------------
    # predict

    @override
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Hypotheses ``tokens (B, L)`` (pad-filled), ``lengths (B,)``, ``log_prob (B,)`` and ``index (B,)``."""
        hypotheses = self.decode(batch["input"], self.hparams.predict_beam_size)
        return {
            "tokens": hypotheses.tokens,
            "lengths": hypotheses.lengths,
            "log_prob": hypotheses.log_prob,
            "index": batch["index"],
        }

    @override
    def on_predict_epoch_end(self) -> None:
        """Write ``hypotheses.txt`` next to each :class:`PredictionWriter`'s merged file (rank 0).

        Lightning runs the callbacks' ``on_predict_epoch_end`` (where the writer merges all ranks' rows by index and
        waits for every rank) before this hook, so rank 0 reads the complete, ordered file.
        """
        for writer in self.trainer.callbacks:
            if isinstance(writer, PredictionWriter) and writer.path is not None and self.trainer.is_global_zero:
                self.write_hypotheses(writer.path, writer.path.with_name("hypotheses.txt"))

    def write_hypotheses(self, predictions: Path, output: Path) -> None:
        """Detokenise the merged ``predictions`` file into ``output``: one line per input, in index order."""
        rows = torch.load(predictions, weights_only=True)
        lines = self.detokenize(rows["tokens"], rows["lengths"])
        output.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        rank_zero_info(f"Translator: {len(lines)} hypotheses written to {output}")

    # ----------------------------------------------------------------------------------------------------------------
    # optimisation

    @override
    def configure_optimizers(self) -> Any:
        """The optimizer (default Adam, lr 1e-3) and optional scheduler, stepped per ``lr_scheduler_interval``."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = {
            "scheduler": self.lr_scheduler_factory(optimizer),
            "interval": self.hparams.lr_scheduler_interval,
            "monitor": self.hparams.lr_scheduler_monitor,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _check_int(name: str, value: Any, low: int, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(
            f"Translator: `{name}` must be an integer >= {low}{' or None' if allow_none else ''}, got {value!r}"
        )
