"""Test helpers: tiny configurations, a toy translation task, a short training loop, and a model with known outputs."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_skd.models.seq2seq import AttentionLSTMSeq2Seq, TransformerSeq2Seq

PAD, BOS, EOS = 0, 1, 2
VOCAB = 14  # ids 3..13 are words (3 is UNK, never used)
TINY = {
    "transformer": (
        TransformerSeq2Seq,
        {"num_encoder_layers": 2, "num_decoder_layers": 2, "d_model": 32, "nhead": 4, "dim_feedforward": 64},
    ),
    "transformer_prenorm": (
        TransformerSeq2Seq,
        {
            "num_encoder_layers": 2,
            "num_decoder_layers": 2,
            "d_model": 32,
            "nhead": 4,
            "dim_feedforward": 64,
            "norm_first": True,
            "share_embeddings": True,
        },
    ),
    "lstm": (AttentionLSTMSeq2Seq, {"embedding_dim": 24, "hidden_size": 32}),
    "lstm_unidirectional_tied": (
        AttentionLSTMSeq2Seq,
        {"embedding_dim": 24, "hidden_size": 32, "bidirectional_encoder": False, "share_decoder_embeddings": True},
    ),
    "lstm_input_feeding": (
        AttentionLSTMSeq2Seq,
        {"embedding_dim": 24, "hidden_size": 32, "decoder_layers": 2, "encoder_layers": 2, "input_feeding": True},
    ),
}


def build(name: str, seed: int = 0, dropout: float = 0.0, **overrides):
    """A seeded tiny model of configuration ``name`` over the toy vocabulary, in eval mode."""
    cls, kwargs = TINY[name]
    torch.manual_seed(seed)
    return cls(VOCAB, VOCAB, PAD, dropout=dropout, **{**kwargs, **overrides}).eval()


class Batch(NamedTuple):
    source: Tensor  # (B, S) x_1 .. x_n EOS, right-padded
    source_lengths: Tensor  # (B,)
    target_input: Tensor  # (B, T) BOS y_1 .. y_m, right-padded
    target: Tensor  # (B, T) y_1 .. y_m EOS, right-padded with -100


def collate(pairs: list[tuple[list[int], list[int]]]) -> Batch:
    """Right-padded batch of ``(source words, target words)`` pairs, in the data module's layout."""
    sources = [s + [EOS] for s, _ in pairs]
    width_s, width_t = max(map(len, sources)), max(len(t) for _, t in pairs) + 1
    source = torch.full((len(pairs), width_s), PAD)
    target_input = torch.full((len(pairs), width_t), PAD)
    target = torch.full((len(pairs), width_t), -100)
    for row, (src, (_, tgt)) in enumerate(zip(sources, pairs, strict=True)):
        source[row, : len(src)] = torch.tensor(src)
        target_input[row, : len(tgt) + 1] = torch.tensor([BOS] + tgt)
        target[row, : len(tgt) + 1] = torch.tensor(tgt + [EOS])
    return Batch(source, torch.tensor([len(s) for s in sources]), target_input, target)


def toy_pairs(count: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """Reverse the source and map word ``w`` to ``17 - w`` (ids 4..13): reordering plus a word-for-word lexicon."""
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(count):
        length = int(torch.randint(3, 7, (1,), generator=generator))
        words = torch.randint(4, VOCAB, (length,), generator=generator).tolist()
        pairs.append((words, [17 - w for w in reversed(words)]))
    return pairs


def train(model, batch: Batch, steps: int, lr: float = 3e-3, seed: int = 0) -> float:
    """Full-batch Adam on cross-entropy; returns the last loss. Leaves the model in eval mode."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        logits = model(batch.source, batch.source_lengths, batch.target_input)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.target.flatten(), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss.detach())


class MarkovSeq2Seq(torch.nn.Module):
    """A ``Seq2Seq`` whose next-token log-probabilities are a fixed table: ``table[source[:, 0], previous token]``.

    ``table (num_sources, V, V)`` holds log-probabilities; each sentence picks its own transition matrix with its
    first source id, so sentences of one batch behave differently.
    """

    def __init__(self, table: Tensor, pad_id: int = PAD) -> None:
        super().__init__()
        self.table, self.pad_id = table, pad_id

    def forward(self, source, source_lengths, target_input, embedding_noise_std=0.0):
        rows = self.table[source[:, :1].expand_as(target_input), target_input]  # (B, T, V)
        return rows

    def encode(self, source, source_lengths):
        return source[:, 0]  # (B,) which table

    def decode_step(self, encoded, state, tokens):
        return self.table[encoded, tokens], None

    def reorder(self, encoded, state, order):
        return encoded.index_select(0, order), state

    @property
    def output_embedding(self):
        return torch.eye(self.table.shape[-1])
