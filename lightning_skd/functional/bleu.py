"""Corpus BLEU with sacreBLEU, split into additive sufficient statistics (exact over batches and processes).

sacreBLEU's corpus BLEU depends on the corpus only through sums over sentences: the matched and total n-gram counts
for ``n = 1 .. max_ngram_order``, the hypothesis length and the (closest) reference length. :func:`bleu_statistics`
returns these sums for a batch of sentences as one int64 vector; vectors of disjoint batches add up to the vector of
their union, and :func:`bleu_from_statistics` turns a vector into sacreBLEU's score (``BLEU.compute_bleu``). So a
sum-reduced state gives exactly ``sacrebleu.corpus_bleu`` of the whole corpus, however it is split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from sacrebleu.metrics import BLEU
from torch import Tensor


def _bleu_arg_validation(max_ngram_order: int) -> None:
    if isinstance(max_ngram_order, bool) or not isinstance(max_ngram_order, int) or max_ngram_order < 1:
        raise ValueError(f"Expected argument `max_ngram_order` to be an int >= 1, but got {max_ngram_order!r}.")


def _sentences_validation(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    for name, value in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(value, str) or not all(isinstance(line, str) for line in value):
            raise ValueError(f"Expected argument `{name}` to be a sequence of strings, but got {value!r:.80}.")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"Expected as many `references` as `hypotheses` (one reference per sentence), but got "
            f"{len(references)} references for {len(hypotheses)} hypotheses."
        )


def _statistics_extractor(
    tokenize: str | None = "13a", lowercase: bool = False, max_ngram_order: int = 4, trg_lang: str = ""
) -> BLEU:
    """A sacreBLEU ``BLEU`` that only extracts statistics: no smoothing (``add-k`` would add k to its counts)."""
    _bleu_arg_validation(max_ngram_order)
    return BLEU(
        lowercase=lowercase, tokenize=tokenize, smooth_method="none", max_ngram_order=max_ngram_order, trg_lang=trg_lang
    )


def _bleu_statistics_update(hypotheses: Sequence[str], references: Sequence[str], extractor: BLEU) -> Tensor:
    _sentences_validation(hypotheses, references)
    order = extractor.max_ngram_order
    if not hypotheses:
        return torch.zeros(2 * order + 2, dtype=torch.long)
    score = extractor.corpus_score(list(hypotheses), [list(references)])
    return torch.tensor([*score.counts, *score.totals, score.sys_len, score.ref_len], dtype=torch.long)


def bleu_statistics(
    hypotheses: Sequence[str],
    references: Sequence[str],
    tokenize: str | None = "13a",
    lowercase: bool = False,
    max_ngram_order: int = 4,
    trg_lang: str = "",
) -> Tensor:
    """Additive corpus statistics of sacreBLEU's BLEU for one batch of detokenised sentences.

    Args:
        hypotheses: ``N`` system outputs (detokenised text).
        references: ``N`` references, one per hypothesis.
        tokenize: sacreBLEU tokenizer (``"13a"``, its default; ``"intl"``, ``"char"``, ...).
        lowercase: Case-insensitive statistics.
        max_ngram_order: Highest n-gram order.
        trg_lang: Target language code (sacreBLEU's default tokenizer for ``zh`` / ``ja`` / ``ko`` when ``tokenize``
            is ``None``).

    Returns:
        int64 tensor of length ``2 * max_ngram_order + 2``: matched n-gram counts, total n-gram counts (both for
        ``n = 1 .. max_ngram_order``), hypothesis length, reference length.

    Example:
        >>> bleu_statistics(["the cat sat"], ["the cat sat down"]).tolist()
        [3, 2, 1, 0, 3, 2, 1, 0, 3, 4]

    """
    extractor = _statistics_extractor(tokenize, lowercase, max_ngram_order, trg_lang)
    return _bleu_statistics_update(hypotheses, references, extractor)


def bleu_from_statistics(
    statistics: Tensor,
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    effective_order: bool = False,
    max_ngram_order: int = 4,
) -> float:
    """Corpus BLEU of sacreBLEU (0-100) from summed :func:`bleu_statistics`.

    Args:
        statistics: int tensor of length ``2 * max_ngram_order + 2`` (a sum of :func:`bleu_statistics` vectors).
        smooth_method: sacreBLEU's smoothing, ``"exp"`` (its default), ``"none"``, ``"floor"`` or ``"add-k"``.
        smooth_value: Value of ``"floor"`` / ``"add-k"`` smoothing.
        effective_order: sacreBLEU's ``effective_order`` (for sentence-level scores; off for corpora).
        max_ngram_order: Highest n-gram order.

    Returns:
        BLEU as a float in [0, 100]; 0 for empty statistics (no hypothesis).

    Example:
        >>> import sacrebleu
        >>> hyps, refs = ["the cat sat on the mat", "a dog runs"], ["the cat sat on a mat", "a dog runs fast"]
        >>> stats = bleu_statistics(hyps[:1], refs[:1]) + bleu_statistics(hyps[1:], refs[1:])
        >>> bleu_from_statistics(stats) == sacrebleu.corpus_bleu(hyps, [refs]).score
        True

    """
    _bleu_arg_validation(max_ngram_order)
    values = [int(v) for v in statistics.tolist()]
    if len(values) != 2 * max_ngram_order + 2:
        raise ValueError(
            f"Expected argument `statistics` to have 2 * max_ngram_order + 2 = {2 * max_ngram_order + 2} entries, "
            f"but got {len(values)}."
        )
    correct, total = values[:max_ngram_order], values[max_ngram_order : 2 * max_ngram_order]
    sys_len, ref_len = values[-2:]
    if sys_len == 0:
        return 0.0
    score = BLEU.compute_bleu(
        correct,
        total,
        sys_len,
        ref_len,
        smooth_method=smooth_method,
        smooth_value=smooth_value,
        effective_order=effective_order,
        max_ngram_order=max_ngram_order,
    )
    return float(score.score)
