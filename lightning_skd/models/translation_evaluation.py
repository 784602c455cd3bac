"""What the ``Translator`` measures on a validation or test set: loss, token calibration, corpus BLEU per decoder."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchmetrics import MeanMetric

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd.metrics import CalibrationMetrics, CorpusBLEU


class TranslationEvaluation(nn.Module):
    """The metrics of one evaluation stage (``val`` or ``test``), all reduced across processes by torchmetrics.

    * ``{stage}/loss``: mean token cross-entropy (teacher forcing) over non-padding target tokens, a
      :class:`~torchmetrics.MeanMetric` (sum states: exact under DDP whatever the ranks' token counts).
    * ``{stage}/nll``, ``ece``, ``aurc``, ``eaurc``, ``top1_err``, ``top5_err``: the calibration metrics of
      :class:`~lightning_skd.metrics.CalibrationMetrics` over target tokens (each non-padding token is one
      prediction). They are fed the logits; ``update`` reduces each batch to three numbers per token (confidence,
      target log-probability, target rank) before anything is stored, so no ``(tokens, V)`` probability rows are
      kept: ECE, NLL and the top-k errors keep sums, AURC / E-AURC one ``(confidence, error)`` pair per token.
    * ``{stage}/bleu`` (greedy decoding) and ``{stage}/bleu_beam<k>`` for every beam width ``k``:
      :class:`~lightning_skd.metrics.CorpusBLEU` (sacreBLEU corpus BLEU from summed statistics).

    Args:
        stage: ``"val"`` or ``"test"``: the key prefix.
        num_classes: Target vocabulary size ``V``.
        beam_sizes: Beam widths (each >= 2) scored besides greedy decoding.
        n_bins: ECE bins.
        ignore_index: Target value of padding.
        bleu_tokenize: sacreBLEU tokenizer.

    """

    def __init__(
        self,
        stage: str,
        num_classes: int,
        beam_sizes: Sequence[int],
        n_bins: int = 15,
        ignore_index: int = IGNORE_INDEX,
        bleu_tokenize: str = "13a",
    ) -> None:
        super().__init__()
        self.stage = stage
        self.loss = MeanMetric()
        self.calibration = CalibrationMetrics(
            num_classes, n_bins=n_bins, ignore_index=ignore_index, from_logits=True, prefix=f"{stage}/"
        )
        self.beam_sizes = tuple(beam_sizes)
        names = ["bleu", *(f"bleu_beam{k}" for k in self.beam_sizes)]
        self.bleu = nn.ModuleDict({name: CorpusBLEU(tokenize=bleu_tokenize) for name in names})

    def update_tokens(self, logits: Tensor, target: Tensor, token_nll: Tensor) -> None:
        """Teacher-forced ``logits (B, T, V)``, ``target (B, T)`` and the non-padding tokens' NLLs ``(N,)``."""
        self.loss.update(token_nll)
        self.calibration.update(logits, target)

    def update_bleu(self, name: str, hypotheses: Sequence[str], references: Sequence[str]) -> None:
        """Add detokenised hypotheses of decoder ``name`` (``"bleu"`` or ``"bleu_beam<k>"``) and their references."""
        self.bleu[name].update(hypotheses, references)

    def compute(self) -> dict[str, Tensor]:
        """Every value, global under DDP (each ``compute`` gathers the states of all processes)."""
        values = {f"{self.stage}/loss": self.loss.compute(), **self.calibration.compute()}
        values.update({f"{self.stage}/{name}": metric.compute() for name, metric in self.bleu.items()})
        return values

    @property
    def signature(self) -> str:
        """The sacreBLEU signature of the BLEU configuration."""
        return next(iter(self.bleu.values())).signature

    def reset(self) -> None:
        """Forget everything seen (start of a new evaluation)."""
        self.loss.reset()
        self.calibration.reset()
        for metric in self.bleu.values():
            metric.reset()
