"""``CorpusBLEU``: sacreBLEU's corpus BLEU as a ``torchmetrics.Metric``, exact under DDP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sacrebleu.metrics import BLEU
from torch import Tensor
from torchmetrics import Metric

from lightning_skd.functional.bleu import (
    _bleu_arg_validation,
    _bleu_statistics_update,
    _statistics_extractor,
    bleu_from_statistics,
)


class CorpusBLEU(Metric):
    """Corpus BLEU of detokenised hypotheses against one reference each, computed by sacreBLEU.

    The state is sacreBLEU's additive corpus statistics (matched and total n-gram counts, hypothesis and reference
    lengths; int64 sums, see :func:`~lightning_skd.functional.bleu.bleu_statistics`), so the value after any number
    of ``update`` calls, on any number of processes (``sum`` reduction), equals ``sacrebleu.corpus_bleu`` of all the
    sentences at once, exactly. :attr:`signature` is sacreBLEU's signature string of the configuration (report it
    next to the score).

    Args:
        tokenize: sacreBLEU tokenizer (``"13a"``, its default; ``"intl"``, ``"char"``, ...; ``None``: sacreBLEU's
            default for ``trg_lang``).
        lowercase: Case-insensitive BLEU.
        smooth_method: ``"exp"`` (sacreBLEU's default), ``"none"``, ``"floor"`` or ``"add-k"``.
        smooth_value: Value of ``"floor"`` / ``"add-k"`` smoothing.
        max_ngram_order: Highest n-gram order (4).
        trg_lang: Target language code, for sacreBLEU's default tokenizer choice (``"zh"``, ``"ja"``, ``"ko"``).
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import sacrebleu
        >>> hyps = ["the cat sat on the mat", "a dog runs", "it is raining today"]
        >>> refs = ["the cat sat on a mat", "a dog runs fast", "it rains today"]
        >>> metric = CorpusBLEU()
        >>> metric.update(hyps[:2], refs[:2])
        >>> metric.update(hyps[2:], refs[2:])
        >>> float(metric.compute()) == sacrebleu.corpus_bleu(hyps, [refs]).score
        True
        >>> metric.signature  # doctest: +ELLIPSIS
        'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...'

    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    statistics: Tensor

    def __init__(
        self,
        tokenize: str | None = "13a",
        lowercase: bool = False,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        max_ngram_order: int = 4,
        trg_lang: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _bleu_arg_validation(max_ngram_order)
        try:
            self.bleu = BLEU(
                lowercase=lowercase,
                tokenize=tokenize,
                smooth_method=smooth_method,
                smooth_value=smooth_value,
                max_ngram_order=max_ngram_order,
                trg_lang=trg_lang,
            )
        except (AssertionError, KeyError, ValueError) as error:  # sacreBLEU checks with assert / dict look-ups
            raise ValueError(
                f"CorpusBLEU: invalid sacreBLEU configuration (tokenize={tokenize!r}, smooth_method={smooth_method!r}, "
                f"smooth_value={smooth_value!r}): {error}"
            ) from error
        # Always one reference per sentence; sacreBLEU would only learn this from its first corpus_score call.
        self.bleu.num_refs = 1
        self._extractor = _statistics_extractor(tokenize, lowercase, max_ngram_order, trg_lang)
        statistics = torch.zeros(2 * max_ngram_order + 2, dtype=torch.long)  # counts, totals, sys_len, ref_len
        self.add_state("statistics", default=statistics, dist_reduce_fx="sum")

    @property
    def signature(self) -> str:
        """The sacreBLEU signature of this configuration, e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|...``."""
        return str(self.bleu.get_signature())

    def update(self, hypotheses: Sequence[str], references: Sequence[str]) -> None:  # type: ignore[override]
        """Add a batch of detokenised hypotheses and their references (one each)."""
        self.statistics += _bleu_statistics_update(hypotheses, references, self._extractor).to(self.statistics.device)

    def compute(self) -> Tensor:
        """BLEU (0-100) of everything seen since the last reset, a float64 scalar (sacreBLEU's value; 0 if nothing)."""
        bleu = self.bleu
        value = bleu_from_statistics(
            self.statistics,
            smooth_method=bleu.smooth_method,
            smooth_value=bleu.smooth_value,
            effective_order=bleu.effective_order,
            max_ngram_order=bleu.max_ngram_order,
        )
        return torch.tensor(value, dtype=torch.float64)
