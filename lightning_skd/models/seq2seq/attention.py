"""``AdditiveAttention``: Bahdanau et al. (2015) attention, ``score_j = v^T tanh(W_s s + W_h h_j)``."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AdditiveAttention(nn.Module):
    """Additive attention over encoder states with a padding mask.

    The keys ``W_h h_j`` do not depend on the decoder state: compute them once with :meth:`keys` and pass them to
    every :meth:`forward` call.

    Args:
        query_size: Size of the decoder state ``s``.
        key_size: Size of an encoder state ``h_j``.
        attention_size: Size of the hidden layer of the score.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> attention = AdditiveAttention(query_size=3, key_size=4, attention_size=5)
        >>> states = torch.randn(2, 6, 4)  # (B, S, key_size)
        >>> padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
        >>> context, weights = attention(torch.randn(2, 3), attention.keys(states), states, padding)
        >>> tuple(context.shape), weights[1, 4:].tolist(), round(float(weights[1].sum().detach()), 6)
        ((2, 4), [0.0, 0.0], 1.0)

    """

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.query_projection = nn.Linear(query_size, attention_size, bias=False)  # W_s
        self.key_projection = nn.Linear(key_size, attention_size)  # W_h (its bias is the score's bias)
        self.score = nn.Linear(attention_size, 1, bias=False)  # v

    def keys(self, states: Tensor) -> Tensor:
        """``W_h h``: ``(B, S, key_size)`` -> ``(B, S, attention_size)``."""
        return self.key_projection(states)

    def forward(self, query: Tensor, keys: Tensor, states: Tensor, padding_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``query (B, query_size)``, ``keys (B, S, A)``, ``states (B, S, key_size)``, ``padding_mask (B, S)``.

        Returns the context ``(B, key_size)`` (weighted sum of the states) and the weights ``(B, S)`` (0 at padding).
        """
        scores = self.score(torch.tanh(self.query_projection(query)[:, None, :] + keys))[..., 0]  # (B, S)
        weights = torch.softmax(scores.masked_fill(padding_mask, float("-inf")), dim=-1)  # (B, S)
        context = torch.bmm(weights[:, None, :], states)[:, 0]  # (B, key_size)
        return context, weights
