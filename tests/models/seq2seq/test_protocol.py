"""What both architectures promise through the ``Seq2Seq`` protocol, checked on each tiny configuration."""

import pytest
import torch

from lightning_skd.models.seq2seq import Seq2Seq, greedy_decode
from tests.helpers.seq2seq import BOS, EOS, PAD, TINY, VOCAB, build, collate, toy_pairs, train

NAMES = list(TINY)


@pytest.mark.parametrize("name", NAMES)
def test_seq2seq_protocol_and_shapes(name):
    model = build(name)
    assert isinstance(model, Seq2Seq)
    batch = collate(toy_pairs(3, seed=1))
    logits = model(batch.source, batch.source_lengths, batch.target_input)
    assert logits.shape == (*batch.target_input.shape, VOCAB)
    assert model.output_embedding.shape[0] == VOCAB
    assert model.output_embedding.requires_grad
    assert model.pad_id == PAD
    encoded = model.encode(batch.source, batch.source_lengths)
    log_probs, state = model.decode_step(encoded, None, batch.target_input[:, 0])
    assert log_probs.shape == (3, VOCAB)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3))


@pytest.mark.parametrize("name", NAMES)
def test_seq2seq_padding_does_not_change_real_positions(name):
    """A pair decoded alone and inside a batch whose other pairs are longer (more source and target padding)."""
    model = build(name)
    short = ([5, 6, 7], [10, 11, 12])
    batch = collate([short, ([4] * 9, [13] * 11), ([8, 9], [9])])
    alone = collate([short])
    logits_batch = model(batch.source, batch.source_lengths, batch.target_input)
    logits_alone = model(alone.source, alone.source_lengths, alone.target_input)
    real = alone.target_input.shape[1]
    assert batch.source.shape[1] > alone.source.shape[1] and batch.target_input.shape[1] > real
    torch.testing.assert_close(logits_batch[0, :real], logits_alone[0], rtol=1e-5, atol=1e-5)
    # and what sits in the padding does not matter either
    garbage = batch.source.clone()
    garbage[0, alone.source.shape[1] :] = 7
    torch.testing.assert_close(model(garbage, batch.source_lengths, batch.target_input)[0, :real], logits_alone[0])


@pytest.mark.parametrize("name", NAMES)
def test_seq2seq_decode_step_equals_teacher_forcing(name):
    """Feeding the target prefix one token at a time gives the teacher-forced log-probs at every position."""
    model = build(name)
    batch = collate(toy_pairs(4, seed=2))
    with torch.no_grad():
        expected = torch.log_softmax(model(batch.source, batch.source_lengths, batch.target_input), -1)
        encoded, state, steps = model.encode(batch.source, batch.source_lengths), None, []
        for position in range(batch.target_input.shape[1]):
            log_probs, state = model.decode_step(encoded, state, batch.target_input[:, position])
            steps.append(log_probs)
    real = batch.target != -100  # (B, T) positions that matter
    torch.testing.assert_close(torch.stack(steps, 1)[real], expected[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_seq2seq_reorder_selects_rows(name):
    """Decoding a reordered / repeated batch gives the rows of the original batch in that order."""
    model = build(name)
    batch = collate(toy_pairs(3, seed=3))
    order = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        encoded = model.encode(batch.source, batch.source_lengths)
        first, state = model.decode_step(encoded, None, torch.full((3,), BOS))
        second, _ = model.decode_step(encoded, state, first.argmax(-1))
        encoded_r, state_r = model.reorder(encoded, state, order)
        second_r, _ = model.decode_step(encoded_r, state_r, first.argmax(-1)[order])
    torch.testing.assert_close(second_r, second[order])


@pytest.mark.parametrize("name", NAMES)
def test_seq2seq_embedding_noise_is_gaussian_on_decoder_inputs(name):
    """``embedding_noise_std=s`` equals adding ``s * N(0, 1)`` (the same draw) to the target embeddings' output."""
    model = build(name)
    batch = collate(toy_pairs(2, seed=4))
    args = (batch.source, batch.source_lengths, batch.target_input)
    clean = model(*args)
    torch.manual_seed(7)
    noisy = model(*args, embedding_noise_std=0.5)
    assert (noisy - clean).abs().max() > 1e-3
    torch.manual_seed(7)
    dim = model.tgt_embedding.embedding_dim
    noise = 0.5 * torch.randn(*batch.target_input.shape, dim)
    hook = model.tgt_embedding.register_forward_hook(
        lambda module, inputs, output: output + noise if inputs[0] is batch.target_input else output
    )
    try:
        reference = model(*args)
    finally:
        hook.remove()
    torch.testing.assert_close(noisy, reference)
    with pytest.raises(ValueError, match="embedding_noise_std"):
        model(*args, embedding_noise_std=-1.0)


@pytest.mark.parametrize("name", NAMES)
def test_seq2seq_memorises_a_few_pairs(name):
    """Proof that the model can learn: 200 full-batch Adam steps on 16 toy pairs, then greedy output == targets."""
    batch = collate(toy_pairs(16, seed=0))
    model = build(name)
    train(model, batch, steps=200)
    hypotheses = greedy_decode(model, batch.source, batch.source_lengths, bos_id=BOS, eos_id=EOS)
    expected_lengths = (batch.target != -100).sum(1) - 1
    assert hypotheses.lengths.tolist() == expected_lengths.tolist()
    width = int(expected_lengths.max())
    expected = batch.target[:, :width].masked_fill(batch.target[:, :width] < 0, PAD)
    expected = expected.masked_fill(expected == EOS, PAD)
    assert torch.equal(hypotheses.tokens, expected)


@pytest.mark.parametrize("name", ["transformer_prenorm", "lstm_input_feeding"])
def test_seq2seq_built_from_yaml_by_jsonargparse(name):
    """LightningCLI's parser fills the plain keyword arguments from a ``class_path`` / ``init_args`` YAML block."""
    from jsonargparse import ArgumentParser

    cls, sizes = TINY[name]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=torch.nn.Module)
    init_args = {"src_vocab_size": VOCAB, "tgt_vocab_size": VOCAB, "pad_id": PAD, **sizes}
    yaml = f"model:\n  class_path: {cls.__module__}.{cls.__name__}\n  init_args: {init_args}\n"
    model = parser.instantiate_classes(parser.parse_string(yaml)).model
    assert type(model) is cls
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in build(name).parameters())


@pytest.mark.parametrize("name", ["transformer", "lstm"])
@pytest.mark.parametrize(
    ("lengths", "match"),
    [([3, 0], r"source_lengths` must lie in \[1, 3\]"), ([4, 1], r"\[1, 3\]"), ([3], r"\(B,\)")],
)
def test_seq2seq_bad_source_lengths(name, lengths, match):
    model = build(name)
    source = torch.tensor([[4, 5, EOS], [EOS, PAD, PAD]])
    with pytest.raises(ValueError, match=match):
        model(source, torch.tensor(lengths), torch.tensor([[BOS], [BOS]]))
    with pytest.raises(ValueError, match=match):
        greedy_decode(model, source, torch.tensor(lengths), bos_id=BOS, eos_id=EOS)
