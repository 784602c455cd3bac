"""``Seq2Seq``: the interface the encoder-decoder models share and the decoding functions and ``Translator`` use."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Seq2Seq(Protocol):
    """An encoder-decoder translation model.

    Source rows are ``x_1 .. x_n EOS`` right-padded with ``pad_id``; ``source_lengths`` counts the real positions
    (EOS included) and defines the source padding mask. Target inputs are ``BOS y_1 .. y_m`` right-padded.

    Incremental decoding: ``encoded = encode(source, source_lengths)``, then ``state = None`` and repeatedly
    ``log_probs, state = decode_step(encoded, state, tokens)`` with the previous tokens ``(B,)`` (BOS first).
    ``reorder(encoded, state, order)`` selects / repeats batch rows of both (``order`` is a ``(B',)`` int64 index).
    """

    pad_id: int

    def forward(
        self, source: Tensor, source_lengths: Tensor, target_input: Tensor, embedding_noise_std: float = 0.0
    ) -> Tensor:
        """``(B, S), (B,), (B, T) -> logits (B, T, V)`` with teacher forcing (+Noise on decoder inputs if > 0)."""
        ...

    def encode(self, source: Tensor, source_lengths: Tensor) -> Any:
        """Encoder state for decoding."""
        ...

    def decode_step(self, encoded: Any, state: Any, tokens: Tensor) -> tuple[Tensor, Any]:
        """``tokens (B,)`` -> ``log_probs (B, V)`` of the next token and the new state (``state=None`` first)."""
        ...

    def reorder(self, encoded: Any, state: Any, order: Tensor) -> tuple[Any, Any]:
        """Select / repeat batch rows of ``encoded`` and ``state`` (beam bookkeeping)."""
        ...

    @property
    def output_embedding(self) -> Tensor:
        """``(V, d)`` softmax weight (the output word embeddings ``EmbeddingSKDLoss`` measures distances in)."""
        ...
