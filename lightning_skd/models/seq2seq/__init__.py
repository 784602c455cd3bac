"""Encoder-decoder translation models sharing the :class:`Seq2Seq` protocol, and batched greedy / beam decoding."""

from lightning_skd.models.seq2seq.attention import AdditiveAttention
from lightning_skd.models.seq2seq.attention_lstm import AttentionLSTMSeq2Seq
from lightning_skd.models.seq2seq.decoding import Hypotheses, beam_search, greedy_decode, length_penalty_factor
from lightning_skd.models.seq2seq.protocol import Seq2Seq
from lightning_skd.models.seq2seq.transformer import TransformerSeq2Seq

__all__ = [
    "AdditiveAttention",
    "AttentionLSTMSeq2Seq",
    "Hypotheses",
    "Seq2Seq",
    "TransformerSeq2Seq",
    "beam_search",
    "greedy_decode",
    "length_penalty_factor",
]
