import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lightning_skd.callbacks import SKDAlphaScheduler
from lightning_skd.cli import main as cli_main
from lightning_skd.data import TextLMDataModule
from lightning_skd.losses import EmbeddingSKDLoss
from lightning_skd.models import LanguageModel
from tests.helpers.trainer import quiet_trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = {"embedding_dim": 16, "hidden_size": 12}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_corpus(folder, names=("train.txt", "valid.txt", "test.txt"), seed=0):
    """A tiny, very regular corpus (a few sentence templates) that an LSTM learns in a few dozen steps."""
    import random

    rng = random.Random(seed)
    subjects, verbs, objects = ["the cat", "a dog", "my bird"], ["sees", "eats", "likes"], ["the fish", "a mouse"]

    def sentences(n):
        return "\n".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} ." for _ in range(n))

    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(names, (96, 16, 16), strict=True):
        (folder / name).write_text(sentences(n) + "\n", encoding="utf-8")
    return folder


def make_trainer(tmp_path, callbacks=(), max_epochs=None, **kwargs):
    kwargs.setdefault("max_steps", 10)
    return quiet_trainer(
        list(callbacks), max_epochs=max_epochs, default_root_dir=tmp_path, num_sanity_val_steps=0, **kwargs
    )


def train_losses(model, datamodule, tmp_path, callbacks=(), steps=40):
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = make_trainer(tmp_path, [*callbacks, Record()], max_steps=steps, limit_val_batches=1)
    trainer.fit(model, datamodule)
    return trainer, losses


def test_language_model_forward_shapes_and_feed_forward_sizes():
    model = LanguageModel(vocab_size=11, **SMALL)
    assert model(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 11)
    assert model.output_embedding.shape == (11, 12)  # untied: ff_size defaults to hidden_size
    tied = LanguageModel(vocab_size=11, tie_weights=True, **SMALL)
    assert tied.output_embedding is tied.embedding.weight and tied.hparams.ff_size == 16
    assert tied(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 11)


def test_language_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="expected ff_size = embedding_dim = 16, got ff_size = 12"):
        LanguageModel(vocab_size=11, tie_weights=True, ff_size=12, **SMALL)
    with pytest.raises(ValueError, match="`hidden_size` must be an integer >= 1, got 0"):
        LanguageModel(vocab_size=11, hidden_size=0)
    with pytest.raises(ValueError, match=r"`embedding_noise_std` must be a finite float >= 0, got -0\.1"):
        LanguageModel(vocab_size=11, embedding_noise_std=-0.1)
    with pytest.raises(ValueError, match=r"sigma must be a finite float > 0, got -0\.1"):
        LanguageModel(vocab_size=11, skd=True, sigma=-0.1)


def test_language_model_noise_only_in_training():
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=11, embedding_noise_std=0.5, **SMALL)
    inputs = torch.randint(0, 11, (2, 4))
    model.eval()
    assert torch.equal(model(inputs), model(inputs))
    model.train()
    assert not torch.equal(model(inputs), model(inputs))


def test_language_model_baseline_loss_falls_and_logs_sentence_nll(tmp_path):
    torch.manual_seed(0)
    datamodule = TextLMDataModule(data_dir=str(write_corpus(tmp_path / "data")), batch_size=16)
    model = LanguageModel(**SMALL, optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    trainer, losses = train_losses(model, datamodule, tmp_path, steps=40)
    assert model.hparams.vocab_size == datamodule.vocab_size == 2 + 12  # <eos>, <unk> and 12 words
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])  # about 2.67 -> 1.57 with this seed
    metrics = trainer.callback_metrics
    assert {"train/loss_step", "val/sentence_nll", "val/ppl"} <= set(metrics)
    assert "skd/q_n" not in metrics


def test_language_model_sentence_nll_is_the_sum_of_token_nll_averaged_over_sentences(tmp_path):
    torch.manual_seed(0)
    datamodule = TextLMDataModule(data_dir=str(write_corpus(tmp_path / "data")), eval_batch_size=5)
    model = LanguageModel(**SMALL)
    result = make_trainer(tmp_path).test(model, datamodule, verbose=False)[0]
    total, tokens, sentences = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for inputs, targets, lengths, _ in datamodule.test_dataloader():
            nll = F.cross_entropy(model(inputs).transpose(1, 2), targets, reduction="none")  # (B, T)
            total += float(nll.sum())
            tokens += int(lengths.sum())
            sentences += len(lengths)
    assert result["test/sentence_nll"] == pytest.approx(total / sentences, rel=1e-5)
    assert result["test/ppl"] == pytest.approx(math.exp(total / tokens), rel=1e-5)


def test_language_model_skd_and_noise_paths_train_and_log(tmp_path):
    torch.manual_seed(0)
    datamodule = TextLMDataModule(data_dir=str(write_corpus(tmp_path / "data")), batch_size=16)
    model = LanguageModel(
        **SMALL, skd=True, sigma="auto", embedding_noise_std=0.05, optimizer=lambda p: torch.optim.Adam(p, lr=0.01)
    )
    assert isinstance(model.skd_loss, EmbeddingSKDLoss)
    trainer, losses = train_losses(
        model, datamodule, tmp_path, callbacks=[SKDAlphaScheduler(warmup_steps=5, eta=0.1)], steps=30
    )
    metrics = trainer.callback_metrics
    assert {"skd/alpha", "skd/q_n", "skd/mismatch", "val/sentence_nll"} <= set(metrics)
    assert float(metrics["skd/alpha"]) == pytest.approx(min((29 - 5) * 0.1, 1.0))
    assert 0.0 <= float(metrics["skd/mismatch"]) <= 1.0 and 0.0 < float(metrics["skd/q_n"]) <= 0.5
    assert math.isfinite(float(model.skd_loss.sigma)) and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) < sum(losses[:5])


def test_language_model_skd_needs_the_alpha_scheduler(tmp_path):
    datamodule = TextLMDataModule(data_dir=str(write_corpus(tmp_path / "data")))
    with pytest.raises(ValueError, match="skd=True needs an SKDAlphaScheduler in trainer.callbacks"):
        make_trainer(tmp_path, max_steps=1).fit(LanguageModel(**SMALL, skd=True), datamodule)


@pytest.mark.filterwarnings("ignore:SKDAlphaScheduler. in epoch 0, q_n sat at its clip")  # sigma 0.1, tiny model
def test_language_model_checkpoint_reloads_without_the_datamodule(tmp_path):
    torch.manual_seed(0)
    datamodule = TextLMDataModule(data_dir=str(write_corpus(tmp_path / "data")), batch_size=16)
    model = LanguageModel(**SMALL, skd=True)
    trainer = make_trainer(tmp_path, [SKDAlphaScheduler(warmup_steps=1, eta=0.5)], max_steps=3, limit_val_batches=1)
    trainer.fit(model, datamodule)
    trainer.save_checkpoint(tmp_path / "lm.ckpt")
    reloaded = LanguageModel.load_from_checkpoint(tmp_path / "lm.ckpt")
    assert reloaded.hparams.vocab_size == datamodule.vocab_size
    assert float(reloaded.skd_loss.alpha) == pytest.approx(0.5)
    inputs = torch.randint(0, datamodule.vocab_size, (2, 4))
    model.eval(), reloaded.eval()
    torch.testing.assert_close(reloaded(inputs), model(inputs))


@pytest.mark.parametrize(
    "config", ["ptb/noise_skd.yaml", "wikitext2/baseline.yaml", "message_catalogs_lm/noise_skd.yaml"]
)
def test_language_model_config_runs_through_the_cli(tmp_path, monkeypatch, config):
    dataset = config.split("/")[0]
    names = {
        "ptb": ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
        "wikitext2": ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
        "message_catalogs_lm": ("train.txt", "valid.txt", "test.txt"),
    }[dataset]
    data_dir = write_corpus(tmp_path / "corpus", names)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lightning-skd"])
    overrides = [
        "--config",
        str(CONFIGS / config),
        "--data.init_args.data_dir",
        str(data_dir),
        "--model.init_args.embedding_dim",
        "16",
        "--model.init_args.hidden_size",
        "12",
        "--trainer.max_steps",
        "4",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.accelerator",
        "cpu",
    ]
    cli_main(["fit", *overrides])
    (best,) = (tmp_path / "outputs" / dataset / Path(config).stem).rglob("checkpoints/best.ckpt")
    checkpoint = torch.load(best, weights_only=False)
    assert checkpoint["hyper_parameters"]["skd"] == ("skd" in config)
    assert checkpoint["hyper_parameters"]["vocab_size"] == 2 + 12  # <eos>, <unk> and 12 words
    cli_main(["test", *overrides, "--ckpt_path", str(best)])  # the test command of the config's header
