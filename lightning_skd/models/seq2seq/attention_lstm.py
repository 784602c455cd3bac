"""``AttentionLSTMSeq2Seq``: the attention LSTM encoder-decoder of Hahn & Choi (2019), Sec. 4.3."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lightning_skd.models.seq2seq._checks import (
    check_int,
    check_non_negative,
    check_probability,
    check_source,
    check_vocab,
)
from lightning_skd.models.seq2seq.attention import AdditiveAttention

__all__ = ["AttentionLSTMSeq2Seq", "LSTMDecoderState", "LSTMEncoded"]


class LSTMEncoded(NamedTuple):
    """Encoder output kept for decoding (every tensor has the batch first)."""

    states: Tensor  # (B, S, E) encoder outputs h_j (E = 2 * encoder_hidden_size if bidirectional)
    keys: Tensor  # (B, S, A) W_h h_j, the attention keys
    padding_mask: Tensor  # (B, S) bool, True at source padding
    initial_hidden: Tensor  # (B, L, H) decoder's initial hidden state, tanh(W_init mean_j h_j)


class LSTMDecoderState(NamedTuple):
    """Decoder recurrence after the tokens fed so far."""

    hidden: Tensor  # (B, L, H)
    cell: Tensor  # (B, L, H)
    feed: Tensor  # (B, O) previous output vector t_{i-1} (zeros at the start; used with input feeding)


class AttentionLSTMSeq2Seq(nn.Module):
    """Bidirectional LSTM encoder, LSTM decoder with additive (Bahdanau) attention.

    Hahn & Choi use Bahdanau et al.'s (2015) attention NMT with LSTM cells instead of GRUs and BPE; they give no
    sizes (the defaults here are ours). One decoder step ``i`` with previous token ``y_{i-1}``:

    1. ``c_i = sum_j a_ij h_j``, ``a_i = softmax_j(v^T tanh(W_s s_{i-1} + W_h h_j))`` over real source positions,
       with ``s_{i-1}`` the top decoder layer's previous hidden state (Bahdanau: attention before the recurrence);
    2. ``s_i = LSTM([E y_{i-1}; c_i (; t_{i-1} with input feeding)], s_{i-1})``;
    3. ``t_i = tanh(W_o [s_i; c_i; E y_{i-1}])`` (Bahdanau's read-out, with tanh instead of maxout);
       logits ``= W t_i + b``. ``W`` ``(V, output_dim)`` is :attr:`output_embedding`.

    The decoder starts from ``s_0 = tanh(W_init mean_j h_j)`` (cell state 0). The encoder runs on packed sequences,
    so padding never enters it. Teacher-forced ``forward`` loops over target positions (the attention of step ``i``
    depends on ``s_{i-1}``); ``decode_step`` runs the same step once.

    Args:
        src_vocab_size: Source vocabulary size.
        tgt_vocab_size: Target vocabulary size ``V``.
        pad_id: Padding id (same in both vocabularies); its embedding rows are zero and get no gradient.
        embedding_dim: Source and target word-embedding size.
        hidden_size: Decoder LSTM units ``H``.
        encoder_hidden_size: Encoder LSTM units per direction; ``None``: ``hidden_size``.
        encoder_layers: Encoder LSTM layers.
        decoder_layers: Decoder LSTM layers ``L``.
        attention_size: Hidden size of the attention score ``A``; ``None``: ``hidden_size``.
        output_dim: Size of the read-out ``t_i`` (and of the softmax weight's rows); ``None``: ``embedding_dim``.
        dropout: Dropout on embeddings, between LSTM layers, on encoder outputs and before the read-out and softmax.
        bidirectional_encoder: Bidirectional encoder (Bahdanau) or a forward-only one.
        input_feeding: Also feed ``t_{i-1}`` into the decoder LSTM (Luong et al., 2015).
        share_decoder_embeddings: Tie the target embedding and the softmax weight (needs ``output_dim ==
            embedding_dim``).

    Raises:
        ValueError: On a bad size or rate, or tied embeddings of different sizes.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = AttentionLSTMSeq2Seq(11, 13, embedding_dim=6, hidden_size=8)
        >>> source, lengths = torch.tensor([[4, 5, 2], [6, 2, 0]]), torch.tensor([3, 2])
        >>> model(source, lengths, torch.tensor([[1, 7], [1, 8]])).shape  # (B, T, V)
        torch.Size([2, 2, 13])
        >>> tuple(model.output_embedding.shape)  # (V, output_dim)
        (13, 6)

    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        embedding_dim: int = 512,
        hidden_size: int = 512,
        encoder_hidden_size: int | None = None,
        encoder_layers: int = 1,
        decoder_layers: int = 1,
        attention_size: int | None = None,
        output_dim: int | None = None,
        dropout: float = 0.2,
        bidirectional_encoder: bool = True,
        input_feeding: bool = False,
        share_decoder_embeddings: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_vocab(owner, src_vocab_size, tgt_vocab_size, pad_id)
        encoder_hidden_size = hidden_size if encoder_hidden_size is None else encoder_hidden_size
        attention_size = hidden_size if attention_size is None else attention_size
        output_dim = embedding_dim if output_dim is None else output_dim
        for name, value in (
            ("embedding_dim", embedding_dim),
            ("hidden_size", hidden_size),
            ("encoder_hidden_size", encoder_hidden_size),
            ("encoder_layers", encoder_layers),
            ("decoder_layers", decoder_layers),
            ("attention_size", attention_size),
            ("output_dim", output_dim),
        ):
            check_int(owner, name, value, 1)
        check_probability(owner, "dropout", dropout)
        if share_decoder_embeddings and output_dim != embedding_dim:
            raise ValueError(
                f"{owner}: `share_decoder_embeddings=True` needs `output_dim` == `embedding_dim` = {embedding_dim}, "
                f"got output_dim={output_dim}"
            )
        self.pad_id = pad_id
        self.input_feeding = input_feeding
        self.decoder_layers, self.hidden_size, self.output_dim = decoder_layers, hidden_size, output_dim
        encoder_size = encoder_hidden_size * (2 if bidirectional_encoder else 1)  # E

        self.src_embedding = nn.Embedding(src_vocab_size, embedding_dim, padding_idx=pad_id)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.LSTM(
            embedding_dim,
            encoder_hidden_size,
            encoder_layers,
            batch_first=True,
            dropout=dropout if encoder_layers > 1 else 0.0,
            bidirectional=bidirectional_encoder,
        )
        self.init_projection = nn.Linear(encoder_size, decoder_layers * hidden_size)  # W_init
        self.attention = AdditiveAttention(hidden_size, encoder_size, attention_size)
        decoder_input = embedding_dim + encoder_size + (output_dim if input_feeding else 0)
        self.decoder = nn.LSTM(
            decoder_input, hidden_size, decoder_layers, batch_first=True, dropout=dropout if decoder_layers > 1 else 0.0
        )
        self.readout = nn.Linear(hidden_size + encoder_size + embedding_dim, output_dim)  # W_o
        self.output_projection = nn.Linear(output_dim, tgt_vocab_size)
        if share_decoder_embeddings:
            self.output_projection.weight = self.tgt_embedding.weight

    @property
    def output_embedding(self) -> Tensor:
        """``(V, output_dim)`` softmax weight."""
        return self.output_projection.weight

    def encode(self, source: Tensor, source_lengths: Tensor) -> LSTMEncoded:
        """``source (B, S)``, ``source_lengths (B,)`` -> encoder states, attention keys, mask, initial state."""
        check_source(type(self).__name__, source, source_lengths)
        batch, length = source.shape
        lengths = source_lengths.to(source.device)
        padding_mask = torch.arange(length, device=source.device)[None, :] >= lengths[:, None]  # (B, S)
        embedded = self.dropout(self.src_embedding(source))  # (B, S, D)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=length)  # (B, S, E)
        states = self.dropout(states)
        mean = states.sum(1) / lengths[:, None].to(states.dtype)  # (B, E), padding rows of `states` are 0
        initial_hidden = torch.tanh(self.init_projection(mean)).view(batch, self.decoder_layers, self.hidden_size)
        return LSTMEncoded(states, self.attention.keys(states), padding_mask, initial_hidden)

    def _initial_state(self, encoded: LSTMEncoded) -> LSTMDecoderState:
        hidden = encoded.initial_hidden  # (B, L, H)
        feed = hidden.new_zeros(hidden.shape[0], self.output_dim)  # (B, O)
        return LSTMDecoderState(hidden, torch.zeros_like(hidden), feed)

    def _step(self, encoded: LSTMEncoded, state: LSTMDecoderState, embedded: Tensor) -> tuple[Tensor, LSTMDecoderState]:
        """``embedded (B, D)`` previous-token embedding -> read-out ``t_i (B, O)`` and the new state."""
        context, _ = self.attention(state.hidden[:, -1], encoded.keys, encoded.states, encoded.padding_mask)  # (B, E)
        inputs = [embedded, context, state.feed] if self.input_feeding else [embedded, context]
        hx = (state.hidden.transpose(0, 1).contiguous(), state.cell.transpose(0, 1).contiguous())  # (L, B, H) each
        output, (hidden, cell) = self.decoder(torch.cat(inputs, dim=-1)[:, None, :], hx)  # output (B, 1, H)
        readout = torch.tanh(self.readout(self.dropout(torch.cat([output[:, 0], context, embedded], dim=-1))))
        return readout, LSTMDecoderState(hidden.transpose(0, 1), cell.transpose(0, 1), readout)

    def forward(
        self, source: Tensor, source_lengths: Tensor, target_input: Tensor, embedding_noise_std: float = 0.0
    ) -> Tensor:
        """``source (B, S)``, ``source_lengths (B,)``, ``target_input (B, T)`` -> logits ``(B, T, V)``.

        ``embedding_noise_std > 0`` adds Gaussian noise of that std to the decoder-input word embeddings, in any
        mode: the caller passes 0 for evaluation.
        """
        check_non_negative(type(self).__name__, "embedding_noise_std", embedding_noise_std)
        encoded = self.encode(source, source_lengths)
        words = self.tgt_embedding(target_input)  # (B, T, D)
        if embedding_noise_std > 0:
            words = words + embedding_noise_std * torch.randn_like(words)  # +Noise (Hahn & Choi)
        words = self.dropout(words)
        state = self._initial_state(encoded)
        readouts = []
        for position in range(target_input.shape[1]):
            readout, state = self._step(encoded, state, words[:, position])
            readouts.append(readout)
        return self.output_projection(self.dropout(torch.stack(readouts, dim=1)))  # (B, T, V)

    def decode_step(
        self, encoded: LSTMEncoded, state: LSTMDecoderState | None, tokens: Tensor
    ) -> tuple[Tensor, LSTMDecoderState]:
        """``tokens (B,)`` -> log-probs ``(B, V)`` of the next token and the new state; ``state=None`` first."""
        state = self._initial_state(encoded) if state is None else state
        readout, state = self._step(encoded, state, self.dropout(self.tgt_embedding(tokens)))
        logits = self.output_projection(self.dropout(readout))  # (B, V)
        return torch.log_softmax(logits.float(), dim=-1), state

    def reorder(
        self, encoded: LSTMEncoded, state: LSTMDecoderState | None, order: Tensor
    ) -> tuple[LSTMEncoded, LSTMDecoderState | None]:
        """Rows ``order (B',)`` of the encoder output and of the decoder state."""
        encoded = LSTMEncoded(*(t.index_select(0, order) for t in encoded))
        if state is not None:
            state = LSTMDecoderState(*(t.index_select(0, order) for t in state))
        return encoded, state
