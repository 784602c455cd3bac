"""Per-sentence negative log-likelihood and perplexity of a language model, as a torchmetrics ``Metric``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from typing_extensions import override


class SentenceNLL(Metric):
    """Accumulate token NLLs per sentence: per-sentence NLL (the paper's metric) and perplexity.

    ``compute()`` returns ``(sentence_nll, ppl)``: the sum of token NLLs of each sentence averaged over sentences,
    and ``exp`` of the NLL averaged over tokens (``<eos>`` included as a token).

    Example:
        >>> metric = SentenceNLL()
        >>> metric.update(torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.tensor([[True, True], [True, False]]))
        >>> [round(float(v), 4) for v in metric.compute()]  # (3 + 3) / 2 sentences, exp(6 / 3 tokens)
        [3.0, 7.3891]

    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("sentences", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @override
    def update(self, token_nll: Tensor, mask: Tensor) -> None:
        """Add a batch of token NLLs ``(B, T)`` with its mask of real positions ``(B, T)``."""
        self.nll += (token_nll * mask).sum(dtype=torch.float64)
        self.tokens += mask.sum()
        self.sentences += mask.shape[0]

    @override
    def compute(self) -> tuple[Tensor, Tensor]:
        """Return ``(sentence_nll, ppl)``."""
        sentence_nll = self.nll / self.sentences.clamp(min=1)
        ppl = torch.exp(self.nll / self.tokens.clamp(min=1))
        return sentence_nll.float(), ppl.float()
