import pytest
import torch

from lightning_skd.models.seq2seq import TransformerSeq2Seq
from lightning_skd.models.seq2seq.positional import sinusoidal_table

SMALL = {"num_encoder_layers": 1, "num_decoder_layers": 1, "d_model": 8, "nhead": 2, "dim_feedforward": 16}


def test_transformer_paper_defaults():
    """Kim et al. (fairseq transformer_iwslt_de_en): 6 + 6 layers, d_model 512, 4 heads, d_ff 1024."""
    model = TransformerSeq2Seq(100, 100)
    assert len(model.encoder.layers) == 6 and len(model.decoder_layers) == 6
    layer = model.decoder_layers[0]
    assert layer.self_attn.embed_dim == 512 and layer.self_attn.num_heads == 4
    assert layer.linear1.out_features == 1024
    assert model.output_embedding.shape == (100, 512)


def test_transformer_embedding_sharing():
    shared = TransformerSeq2Seq(20, 20, share_embeddings=True, **SMALL)
    assert shared.src_embedding.weight is shared.tgt_embedding.weight is shared.output_embedding
    tied = TransformerSeq2Seq(20, 30, share_decoder_embeddings=True, **SMALL)
    assert tied.tgt_embedding.weight is tied.output_embedding and tied.src_embedding.weight is not tied.output_embedding
    separate = TransformerSeq2Seq(20, 30, share_decoder_embeddings=False, **SMALL)
    assert separate.tgt_embedding.weight is not separate.output_embedding
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(separate) - count(tied) == 30 * 8
    assert (shared.src_embedding.weight[0] == 0).all()  # pad row


def test_transformer_scaled_embeddings_plus_sinusoids():
    """The decoder input at position p is sqrt(d) * E[y] + PE[p] (dropout 0)."""
    model = TransformerSeq2Seq(20, 20, dropout=0.0, **SMALL)
    tokens = torch.tensor([[5, 6, 7]])
    expected = model.tgt_embedding.weight[tokens] * 8**0.5 + sinusoidal_table(3, 8)
    torch.testing.assert_close(model._embed_target(tokens, 0), expected)


def test_transformer_norm_first_changes_the_layers():
    post = TransformerSeq2Seq(20, 20, **SMALL)
    pre = TransformerSeq2Seq(20, 20, norm_first=True, **SMALL)
    assert not post.decoder_layers[0].norm_first and pre.decoder_layers[0].norm_first
    assert pre.encoder.norm is not None and post.encoder.norm is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"src_vocab_size": 1}, "src_vocab_size"),
        ({"tgt_vocab_size": 2.5}, "tgt_vocab_size"),
        ({"pad_id": 25}, "pad_id"),
        ({"d_model": 10, "nhead": 4}, "nhead"),
        ({"num_decoder_layers": 0}, "num_decoder_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"share_embeddings": True, "tgt_vocab_size": 21}, "joint vocabulary"),
        ({"share_embeddings": True, "share_decoder_embeddings": False}, "share_decoder_embeddings"),
    ],
)
def test_transformer_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerSeq2Seq(**{"src_vocab_size": 20, "tgt_vocab_size": 20, **SMALL, **kwargs})


def test_transformer_too_long_input_is_an_error():
    model = TransformerSeq2Seq(20, 20, max_positions=4, **SMALL)
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.ones(1, 5, dtype=torch.long), torch.tensor([5]), torch.ones(1, 2, dtype=torch.long))
