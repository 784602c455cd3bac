"""``TransformerSeq2Seq``: the Transformer encoder-decoder (Vaswani et al., 2017) of Kim et al. (2020), Sec. 3.4."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_skd.models.seq2seq._checks import (
    check_int,
    check_non_negative,
    check_probability,
    check_source,
    check_vocab,
)
from lightning_skd.models.seq2seq.positional import SinusoidalPositions

__all__ = ["TransformerDecoderState", "TransformerEncoded", "TransformerSeq2Seq"]


class TransformerEncoded(NamedTuple):
    """Encoder output kept for incremental decoding (every tensor has the batch first)."""

    memory: Tensor  # (B, S, d) encoder output
    padding_mask: Tensor  # (B, S) bool, True at source padding
    cross_keys: tuple[Tensor, ...]  # per decoder layer (B, H, S, d/H): encoder-decoder attention keys
    cross_values: tuple[Tensor, ...]  # per decoder layer (B, H, S, d/H)


class TransformerDecoderState(NamedTuple):
    """Self-attention key/value cache of the tokens decoded so far."""

    keys: tuple[Tensor, ...]  # per decoder layer (B, H, t, d/H)
    values: tuple[Tensor, ...]  # per decoder layer (B, H, t, d/H)
    step: int  # t: tokens fed so far (position of the next token)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """``(B, T, d)`` -> ``(B, H, T, d/H)``."""
    batch, length, dim = x.shape
    return x.view(batch, length, heads, dim // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """``(B, H, T, d/H)`` -> ``(B, T, d)``."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class TransformerSeq2Seq(nn.Module):
    """Transformer encoder-decoder built from ``torch.nn`` layers, with key/value caching for decoding.

    Embeddings are scaled by ``sqrt(d_model)`` and summed with sinusoidal positions; the encoder and decoder are
    stacks of ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` (ReLU, ``batch_first``), post-norm as in
    Vaswani et al. or pre-norm (``norm_first``, with a final ``LayerNorm`` after each stack as in fairseq). Kim et
    al. use fairseq's ``transformer_iwslt_de_en`` sizes: 6 + 6 layers, ``d_model`` 512, 4 heads, ``d_ff`` 1024 (the
    defaults here). Word embeddings are initialised ``N(0, d_model^-0.5)`` with a zero padding row, as in fairseq.

    The source padding mask comes from ``source_lengths`` (position ``s`` is padding iff ``s >= source_lengths``);
    the decoder uses a causal mask only: with right padding, real target positions never attend to padding.

    ``decode_step`` runs one position through the same layers' weights, caching every layer's self-attention keys
    and values (and the encoder-decoder keys / values once, in ``encode``), so a step costs O(t) instead of
    recomputing the prefix. It gives the teacher-forced ``forward``'s log-probabilities (tested). It applies dropout
    like the layers do when the module is in training mode; decode in ``eval()`` mode.

    Args:
        src_vocab_size: Source vocabulary size.
        tgt_vocab_size: Target vocabulary size ``V``.
        pad_id: Padding id (same in both vocabularies); its embedding row is zero and gets no gradient.
        num_encoder_layers: Encoder layers ``N``.
        num_decoder_layers: Decoder layers ``N``.
        d_model: Model width.
        nhead: Attention heads (must divide ``d_model``).
        dim_feedforward: Inner size of the feed-forward blocks ``d_ff``.
        dropout: Dropout on embeddings, sub-layer outputs, attention weights and the feed-forward activation.
        share_embeddings: One embedding matrix for source, target and output (needs
            ``src_vocab_size == tgt_vocab_size``, i.e. a joint vocabulary); implies ``share_decoder_embeddings``.
        share_decoder_embeddings: Tie the decoder input embedding and the output projection.
        norm_first: Pre-norm (LayerNorm before each sub-layer) instead of post-norm.
        max_positions: Longest source or target sequence.

    Raises:
        ValueError: On a bad size or rate, ``nhead`` not dividing ``d_model``, ``share_embeddings`` with different
            vocabulary sizes, or ``share_embeddings`` with ``share_decoder_embeddings=False``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = TransformerSeq2Seq(11, 13, num_encoder_layers=1, num_decoder_layers=1, d_model=8, nhead=2,
        ...                            dim_feedforward=16)
        >>> source, lengths = torch.tensor([[4, 5, 2], [6, 2, 0]]), torch.tensor([3, 2])
        >>> model(source, lengths, torch.tensor([[1, 7], [1, 8]])).shape  # (B, T, V)
        torch.Size([2, 2, 13])
        >>> tuple(model.output_embedding.shape)  # (V, d)
        (13, 8)

    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        d_model: int = 512,
        nhead: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        share_embeddings: bool = False,
        share_decoder_embeddings: bool = True,
        norm_first: bool = False,
        max_positions: int = 1024,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_vocab(owner, src_vocab_size, tgt_vocab_size, pad_id)
        for name, value in (
            ("num_encoder_layers", num_encoder_layers),
            ("num_decoder_layers", num_decoder_layers),
            ("d_model", d_model),
            ("nhead", nhead),
            ("dim_feedforward", dim_feedforward),
            ("max_positions", max_positions),
        ):
            check_int(owner, name, value, 1)
        check_probability(owner, "dropout", dropout)
        if d_model % nhead:
            raise ValueError(f"{owner}: `nhead` must divide `d_model` = {d_model}, got nhead={nhead!r}")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"{owner}: `share_embeddings=True` needs a joint vocabulary (src_vocab_size == tgt_vocab_size), "
                f"got src_vocab_size={src_vocab_size} and tgt_vocab_size={tgt_vocab_size}"
            )
        if share_embeddings and not share_decoder_embeddings:
            raise ValueError(
                f"{owner}: `share_embeddings=True` ties source, target and output embeddings, so "
                "`share_decoder_embeddings` must be True, got False"
            )
        self.pad_id = pad_id
        self.d_model, self.nhead = d_model, nhead
        self.norm_first = norm_first
        self.embed_scale = math.sqrt(d_model)

        self.src_embedding = self._embedding(src_vocab_size)
        self.tgt_embedding = self.src_embedding if share_embeddings else self._embedding(tgt_vocab_size)
        self.output_projection = nn.Linear(d_model, tgt_vocab_size, bias=False)
        if share_embeddings or share_decoder_embeddings:
            self.output_projection.weight = self.tgt_embedding.weight
        else:
            nn.init.normal_(self.output_projection.weight, mean=0.0, std=d_model**-0.5)
        self.positions = SinusoidalPositions(d_model, max_positions)
        self.dropout = nn.Dropout(dropout)

        encoder_layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(
            encoder_layer,
            num_encoder_layers,
            norm=nn.LayerNorm(d_model) if norm_first else None,
            enable_nested_tensor=False,
        )
        self.decoder_layers = nn.ModuleList(
            nn.TransformerDecoderLayer(
                d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=norm_first
            )
            for _ in range(num_decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()

    def _embedding(self, vocab_size: int) -> nn.Embedding:
        embedding = nn.Embedding(vocab_size, self.d_model, padding_idx=self.pad_id)
        nn.init.normal_(embedding.weight, mean=0.0, std=self.d_model**-0.5)
        with torch.no_grad():
            embedding.weight[self.pad_id].zero_()
        return embedding

    @property
    def output_embedding(self) -> Tensor:
        """``(V, d_model)`` softmax weight."""
        return self.output_projection.weight

    def _embed_target(self, tokens: Tensor, offset: int, noise_std: float = 0.0) -> Tensor:
        """``(B, T)`` target ids -> ``(B, T, d)``: (word embedding + noise) * sqrt(d) + positions, dropout."""
        words = self.tgt_embedding(tokens)  # (B, T, d)
        if noise_std > 0:
            words = words + noise_std * torch.randn_like(words)  # +Noise (Hahn & Choi) on the word embeddings
        return self.dropout(self.positions(words * self.embed_scale, offset))

    def _encode_memory(self, source: Tensor, source_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, S), (B,)`` -> memory ``(B, S, d)`` and padding mask ``(B, S)`` (True at padding)."""
        check_source(type(self).__name__, source, source_lengths)
        positions = torch.arange(source.shape[1], device=source.device)
        padding_mask = positions[None, :] >= source_lengths.to(source.device)[:, None]  # (B, S)
        x = self.dropout(self.positions(self.src_embedding(source) * self.embed_scale))  # (B, S, d)
        return self.encoder(x, src_key_padding_mask=padding_mask), padding_mask

    def forward(
        self, source: Tensor, source_lengths: Tensor, target_input: Tensor, embedding_noise_std: float = 0.0
    ) -> Tensor:
        """``source (B, S)``, ``source_lengths (B,)``, ``target_input (B, T)`` -> logits ``(B, T, V)``.

        ``embedding_noise_std > 0`` adds Gaussian noise of that std to the decoder-input word embeddings (before
        the ``sqrt(d_model)`` scaling), in any mode: the caller passes 0 for evaluation.
        """
        check_non_negative(type(self).__name__, "embedding_noise_std", embedding_noise_std)
        memory, padding_mask = self._encode_memory(source, source_lengths)
        length = target_input.shape[1]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=source.device), diagonal=1)  # (T, T)
        x = self._embed_target(target_input, 0, embedding_noise_std)  # (B, T, d)
        for layer in self.decoder_layers:
            x = layer(x, memory, tgt_mask=causal, memory_key_padding_mask=padding_mask, tgt_is_causal=True)
        return self.output_projection(self.decoder_norm(x))  # (B, T, V)

    def encode(self, source: Tensor, source_lengths: Tensor) -> TransformerEncoded:
        """Run the encoder and project its output to every decoder layer's encoder-decoder keys and values."""
        memory, padding_mask = self._encode_memory(source, source_lengths)
        keys, values = [], []
        d = self.d_model
        for layer in self.decoder_layers:
            attention = layer.multihead_attn
            weight, bias = attention.in_proj_weight, attention.in_proj_bias  # (3d, d), (3d,)
            keys.append(_split_heads(F.linear(memory, weight[d : 2 * d], bias[d : 2 * d]), self.nhead))
            values.append(_split_heads(F.linear(memory, weight[2 * d :], bias[2 * d :]), self.nhead))
        return TransformerEncoded(memory, padding_mask, tuple(keys), tuple(values))

    def _attention_dropout(self, attention: nn.MultiheadAttention) -> float:
        return attention.dropout if self.training else 0.0

    def _self_attention(
        self, layer: nn.TransformerDecoderLayer, x: Tensor, past_keys: Tensor | None, past_values: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One new position ``x (B, 1, d)`` attends to the cached positions and itself; returns output, new K, V."""
        attention = layer.self_attn
        query, key, value = F.linear(x, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
        query, key, value = (_split_heads(t, self.nhead) for t in (query, key, value))  # (B, H, 1, d/H)
        if past_keys is not None:
            key = torch.cat([past_keys, key], dim=2)  # (B, H, t + 1, d/H)
            value = torch.cat([past_values, value], dim=2)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=self._attention_dropout(attention))
        return attention.out_proj(_merge_heads(out)), key, value

    def _cross_attention(
        self, layer: nn.TransformerDecoderLayer, x: Tensor, keys: Tensor, values: Tensor, keep: Tensor
    ) -> Tensor:
        """``x (B, 1, d)`` attends to the cached encoder keys / values ``(B, H, S, d/H)``; ``keep (B, 1, 1, S)``."""
        attention = layer.multihead_attn
        d = self.d_model
        query = _split_heads(F.linear(x, attention.in_proj_weight[:d], attention.in_proj_bias[:d]), self.nhead)
        out = F.scaled_dot_product_attention(
            query, keys, values, attn_mask=keep, dropout_p=self._attention_dropout(attention)
        )
        return attention.out_proj(_merge_heads(out))

    @staticmethod
    def _feed_forward(layer: nn.TransformerDecoderLayer, x: Tensor) -> Tensor:
        return layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))

    def decode_step(
        self, encoded: TransformerEncoded, state: TransformerDecoderState | None, tokens: Tensor
    ) -> tuple[Tensor, TransformerDecoderState]:
        """``tokens (B,)`` at position ``t`` -> log-probs ``(B, V)`` of position ``t + 1``; ``state=None`` first."""
        step = 0 if state is None else state.step
        keep = ~encoded.padding_mask[:, None, None, :]  # (B, 1, 1, S), True where attention may look
        x = self._embed_target(tokens[:, None], step)  # (B, 1, d)
        new_keys, new_values = [], []
        for index, layer in enumerate(self.decoder_layers):
            past_keys = None if state is None else state.keys[index]
            past_values = None if state is None else state.values[index]
            cross_keys, cross_values = encoded.cross_keys[index], encoded.cross_values[index]
            if self.norm_first:
                attended, key, value = self._self_attention(layer, layer.norm1(x), past_keys, past_values)
                x = x + layer.dropout1(attended)
                x = x + layer.dropout2(self._cross_attention(layer, layer.norm2(x), cross_keys, cross_values, keep))
                x = x + self._feed_forward(layer, layer.norm3(x))
            else:
                attended, key, value = self._self_attention(layer, x, past_keys, past_values)
                x = layer.norm1(x + layer.dropout1(attended))
                x = layer.norm2(x + layer.dropout2(self._cross_attention(layer, x, cross_keys, cross_values, keep)))
                x = layer.norm3(x + self._feed_forward(layer, x))
            new_keys.append(key)
            new_values.append(value)
        logits = self.output_projection(self.decoder_norm(x[:, 0]))  # (B, V)
        return torch.log_softmax(logits.float(), dim=-1), TransformerDecoderState(
            tuple(new_keys), tuple(new_values), step + 1
        )

    def reorder(
        self, encoded: TransformerEncoded, state: TransformerDecoderState | None, order: Tensor
    ) -> tuple[TransformerEncoded, TransformerDecoderState | None]:
        """Rows ``order (B',)`` of the encoder output and of the cache."""
        encoded = TransformerEncoded(
            encoded.memory.index_select(0, order),
            encoded.padding_mask.index_select(0, order),
            tuple(t.index_select(0, order) for t in encoded.cross_keys),
            tuple(t.index_select(0, order) for t in encoded.cross_values),
        )
        if state is not None:
            state = TransformerDecoderState(
                tuple(t.index_select(0, order) for t in state.keys),
                tuple(t.index_select(0, order) for t in state.values),
                state.step,
            )
        return encoded, state
