"""Translator on the synthetic toy language pair (``write_synthetic_parallel_corpus``), in one CPU process."""

import functools

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lightning_skd.callbacks import SKDAlphaScheduler
from lightning_skd.callbacks.self_kd import SelfKDCallback
from lightning_skd.data import ParallelTextDataModule, write_synthetic_parallel_corpus
from lightning_skd.models import Translator
from lightning_skd.models.seq2seq import TransformerSeq2Seq

TINY_TRANSFORMER = functools.partial(
    TransformerSeq2Seq, num_encoder_layers=1, num_decoder_layers=1, d_model=16, nhead=2, dim_feedforward=32, dropout=0.0
)
NUM_TEST = 40


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy_pair")
    write_synthetic_parallel_corpus(folder, num_train=600, num_valid=NUM_TEST, num_test=NUM_TEST)
    return folder


def datamodule(corpus, **kwargs):
    options = {"source_lang": "src", "target_lang": "tgt", "vocab_size": 64, "max_tokens": 512, **kwargs}
    return ParallelTextDataModule(data_dir=str(corpus), **options)


def trainer(tmp_path, callbacks=(), **kwargs):
    options = {
        "accelerator": "cpu",
        "logger": pl.loggers.CSVLogger(tmp_path, name="logs"),
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **kwargs,
    }
    return pl.Trainer(callbacks=list(callbacks), **options)


def test_translator_refuses_label_smoothing_with_skd():
    with pytest.raises(ValueError, match="label_smoothing=0.1 and skd=True both replace the hard target"):
        Translator(TINY_TRANSFORMER, label_smoothing=0.1, skd=True)


@pytest.mark.parametrize(
    ("kwargs", "callbacks", "match"),
    [
        ({"label_smoothing": 0.1}, [SelfKDCallback(mode="snapshot")], "SelfKDCallback both soften the targets"),
        ({"skd": True}, [SelfKDCallback(), SKDAlphaScheduler()], r"skd=True\) and SelfKDCallback both replace"),
        ({"skd": True}, [], "skd=True needs an SKDAlphaScheduler"),
    ],
)
def test_translator_refuses_undefined_objective_combinations_in_setup(kwargs, callbacks, match, corpus, tmp_path):
    model = Translator(TINY_TRANSFORMER, **kwargs)
    with pytest.raises(ValueError, match=match):
        trainer(tmp_path, callbacks, max_epochs=1, limit_train_batches=1).fit(model, datamodule=datamodule(corpus))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": TINY_TRANSFORMER(10, 10, 0)}, "`model` must be a factory"),
        ({"label_smoothing": 1.0}, "`label_smoothing` must be a float in"),
        ({"embedding_noise_std": -0.1}, "`embedding_noise_std` must be a finite float >= 0"),
        ({"test_beam_sizes": [1, 5]}, "`test_beam_sizes` must hold distinct beam widths >= 2"),
        ({"src_vocab_size": 1}, "`src_vocab_size` must be an integer >= 2 or None"),
        ({"predict_beam_size": 0}, "`predict_beam_size` must be an integer >= 1"),
        ({"lr_scheduler_interval": "batch"}, "`lr_scheduler_interval` must be 'step' or 'epoch'"),
    ],
)
def test_translator_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Translator(**{"model": TINY_TRANSFORMER, **kwargs})


def test_translator_needs_vocabulary_sizes_from_arguments_or_datamodule(tmp_path):
    model = Translator(TINY_TRANSFORMER)
    loader = torch.utils.data.DataLoader([0])
    with pytest.raises(ValueError, match="`src_vocab_size` is None and the trainer has no datamodule"):
        trainer(tmp_path, max_steps=1).fit(model, train_dataloaders=loader)


def built(**kwargs):
    return Translator(TINY_TRANSFORMER, src_vocab_size=11, tgt_vocab_size=13, pad_id=0, bos_id=1, eos_id=2, **kwargs)


def test_translator_label_smoothing_equals_reference_formula():
    torch.manual_seed(0)
    eps, vocab = 0.1, 13
    logits = torch.randn(3, 5, vocab)
    target = torch.randint(3, vocab, (3, 5))
    target[0, 3:] = -100  # padding
    target[2, 1:] = -100
    loss = built(label_smoothing=eps).objective(logits, target)
    # q = (1 - eps) onehot(y) + eps / V (uniform over all V classes); mean over non-padding tokens of -sum q log p
    log_p = logits.log_softmax(-1)
    mask = target != -100
    q = (1 - eps) * F.one_hot(target.clamp(min=0), vocab).float() + eps / vocab
    expected = -(q * log_p).sum(-1)[mask].mean()
    torch.testing.assert_close(loss, expected)
    plain = built().objective(logits, target)  # no trainer, no callback: plain token cross-entropy
    torch.testing.assert_close(plain, -log_p.gather(-1, target.clamp(min=0)[..., None])[..., 0][mask].mean())


def test_translator_noise_only_in_training():
    torch.manual_seed(0)
    from lightning_skd.data.parallel_text import TranslationInput

    inputs = TranslationInput(
        torch.randint(3, 11, (2, 6)),
        torch.tensor([6, 4]),
        torch.cat([torch.ones(2, 1).long(), torch.randint(3, 13, (2, 4))], 1),
    )
    noisy, clean = built(embedding_noise_std=0.5), built()
    clean.load_state_dict(noisy.state_dict())
    for module in (noisy, clean):
        module.eval()
    torch.testing.assert_close(noisy(inputs), clean(inputs))  # evaluation: no noise
    noisy.train(), clean.train()  # dropout is 0: training differs only by the noise
    torch.testing.assert_close(clean(inputs), clean.eval()(inputs))
    assert not torch.allclose(noisy.train()(inputs), clean(inputs))
