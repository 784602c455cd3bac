import pytest
import torch

from lightning_skd.models.seq2seq import AdditiveAttention, AttentionLSTMSeq2Seq


def test_attention_lstm_sizes_and_tying():
    model = AttentionLSTMSeq2Seq(20, 30, embedding_dim=6, hidden_size=8, encoder_hidden_size=5, attention_size=7)
    assert model.encoder.bidirectional and model.encoder.hidden_size == 5
    assert model.attention.key_projection.in_features == 10  # both directions
    assert model.output_embedding.shape == (30, 6)
    tied = AttentionLSTMSeq2Seq(20, 30, embedding_dim=6, hidden_size=8, share_decoder_embeddings=True)
    assert tied.output_embedding is tied.tgt_embedding.weight
    forward_only = AttentionLSTMSeq2Seq(20, 30, embedding_dim=6, hidden_size=8, bidirectional_encoder=False)
    assert forward_only.attention.key_projection.in_features == 8


def test_additive_attention_matches_definition():
    """score_j = v^T tanh(W_s s + W_h h_j + b), softmax over real positions, context = sum_j a_j h_j."""
    torch.manual_seed(0)
    attention = AdditiveAttention(3, 4, 5)
    query, states = torch.randn(2, 3), torch.randn(2, 6, 4)
    padding = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    context, weights = attention(query, attention.keys(states), states, padding)
    w_s, w_h, b, v = (
        attention.query_projection.weight,
        attention.key_projection.weight,
        attention.key_projection.bias,
        attention.score.weight[0],
    )
    for row in range(2):
        real = int((~padding[row]).sum())
        scores = torch.stack([v @ torch.tanh(w_s @ query[row] + w_h @ states[row, j] + b) for j in range(real)])
        expected = torch.softmax(scores, 0)
        torch.testing.assert_close(weights[row, :real], expected)
        torch.testing.assert_close(context[row], expected @ states[row, :real])
        assert (weights[row, real:] == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"src_vocab_size": 0}, "src_vocab_size"),
        ({"pad_id": -1}, "pad_id"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"decoder_layers": 1.5}, "decoder_layers"),
        ({"dropout": -0.1}, "dropout"),
        ({"share_decoder_embeddings": True, "output_dim": 7}, "output_dim"),
    ],
)
def test_attention_lstm_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionLSTMSeq2Seq(**{"src_vocab_size": 20, "tgt_vocab_size": 20, "embedding_dim": 6, **kwargs})
