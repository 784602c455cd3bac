import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_skd._warnings import LightningSKDWarning
from lightning_skd.callbacks import SKDAlphaScheduler
from lightning_skd.losses import EmbeddingSKDLoss
from tests.helpers.trainer import quiet_trainer

VOCAB, DIM = 6, 4


class TinySKDModule(pl.LightningModule):
    """A bag-of-features classifier with an SKD loss; records the alpha each training batch used."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, DIM)
        self.out = nn.Linear(DIM, VOCAB)
        self.loss_fn = EmbeddingSKDLoss(sigma=0.1, alpha=0.0)
        self.seen = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append((self.global_step, float(self.loss_fn.alpha)))
        return self.loss_fn(self.out(torch.relu(self.hidden(x))), y, self.out.weight)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader():
    gen = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(64, 3, generator=gen), torch.randint(0, VOCAB, (64,), generator=gen)))


def make_trainer(tmp_path, callbacks, max_epochs=None, **kwargs):
    return quiet_trainer(callbacks, max_epochs=max_epochs, default_root_dir=tmp_path, **kwargs)


def test_skd_alpha_scheduler_alpha_at_follows_algorithm_one():
    scheduler = SKDAlphaScheduler(warmup_steps=500, eta=0.0002)
    assert scheduler.alpha_at(499) == 0.0  # K - 1
    assert scheduler.alpha_at(500) == 0.0  # K: first SKD step, alpha not yet increased
    assert scheduler.alpha_at(501) == pytest.approx(0.0002)  # K + 1
    assert scheduler.alpha_at(5499) == pytest.approx(1 - 0.0002)
    assert scheduler.alpha_at(5500) == 1.0  # saturation
    assert scheduler.alpha_at(10**7) == 1.0


def test_skd_alpha_scheduler_sets_alpha_per_optimizer_step_and_logs_it(tmp_path):
    model = TinySKDModule()
    scheduler = SKDAlphaScheduler(warmup_steps=2, eta=0.25)
    trainer = make_trainer(tmp_path, [scheduler], max_steps=8)
    trainer.fit(model, loader())
    assert model.seen == [(s, scheduler.alpha_at(s)) for s in range(8)]
    assert [a for _, a in model.seen] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert float(trainer.logged_metrics["skd/alpha"]) == 1.0


def test_skd_alpha_scheduler_counts_optimizer_steps_under_gradient_accumulation(tmp_path):
    model = TinySKDModule()
    trainer = make_trainer(
        tmp_path, [SKDAlphaScheduler(warmup_steps=1, eta=0.5)], max_steps=4, accumulate_grad_batches=2
    )
    trainer.fit(model, loader())
    assert [a for _, a in model.seen] == [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


@pytest.mark.filterwarnings("ignore:You.re resuming from a checkpoint")
def test_skd_alpha_scheduler_survives_a_checkpoint_round_trip(tmp_path):
    first_model, first = TinySKDModule(), SKDAlphaScheduler(warmup_steps=2, eta=0.1)
    trainer = make_trainer(tmp_path, [first], max_steps=5)
    trainer.fit(first_model, loader())
    ckpt = tmp_path / "skd.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert saved["callbacks"]["SKDAlphaScheduler"]["step"] == 4
    assert saved["callbacks"]["SKDAlphaScheduler"]["alpha"] == pytest.approx(0.2)
    assert float(saved["state_dict"]["loss_fn.alpha"]) == pytest.approx(0.2)

    restored = SKDAlphaScheduler(warmup_steps=2, eta=0.1)
    restored.load_state_dict(saved["callbacks"]["SKDAlphaScheduler"])
    assert (restored.step, restored.alpha) == (4, pytest.approx(0.2))

    resumed_model, resumed = TinySKDModule(), SKDAlphaScheduler(warmup_steps=2, eta=0.1)
    make_trainer(tmp_path, [resumed], max_steps=8).fit(resumed_model, loader(), ckpt_path=ckpt)
    assert [s for s, _ in resumed_model.seen] == [5, 6, 7]
    assert [a for _, a in resumed_model.seen] == pytest.approx([0.3, 0.4, 0.5])
    assert resumed.state_dict()["step"] == 7


def test_skd_alpha_scheduler_warns_when_the_resumed_schedule_differs():
    scheduler = SKDAlphaScheduler(warmup_steps=10, eta=0.1)
    with pytest.warns(LightningSKDWarning, match="differs from the configured"):
        scheduler.load_state_dict({"warmup_steps": 2, "eta": 0.1, "max_alpha": 1.0, "step": 12, "alpha": 1.0})
    assert scheduler.alpha == pytest.approx(0.2)  # the configured schedule at the saved step


def test_skd_alpha_scheduler_needs_an_skd_loss_in_the_model(tmp_path):
    class Plain(TinySKDModule):
        def __init__(self):
            super().__init__()
            del self.loss_fn

    with pytest.raises(ValueError, match="needs an EmbeddingSKDLoss inside the model, got Plain without one"):
        make_trainer(tmp_path, [SKDAlphaScheduler()], max_steps=1).fit(Plain(), loader())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warmup_steps": -5}, r"warmup_steps \(K\) must be an integer >= 0, got -5"),
        ({"eta": -0.001}, r"eta must be a finite float > 0, got -0\.001"),
        ({"max_alpha": 0.0}, r"max_alpha must be in \(0, 1\], got 0\.0"),
    ],
)
def test_skd_alpha_scheduler_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SKDAlphaScheduler(**kwargs)


class ManyTokens(TinySKDModule):
    def __init__(self, sigma: float):
        super().__init__()
        self.loss_fn = EmbeddingSKDLoss(sigma=sigma, alpha=0.0)


def many_tokens_loader():
    gen = torch.Generator().manual_seed(1)
    return DataLoader(
        TensorDataset(torch.randn(256, 3, generator=gen), torch.randint(0, VOCAB, (256,), generator=gen)), batch_size=64
    )


@pytest.mark.parametrize(("sigma", "degenerate"), [(1e-6, True), (50.0, False)])
def test_skd_alpha_scheduler_logs_the_clipped_fraction_and_warns_when_q_n_is_degenerate(sigma, degenerate, tmp_path):
    torch.manual_seed(0)
    model = ManyTokens(sigma)
    scheduler = SKDAlphaScheduler(warmup_steps=0, eta=0.5)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        make_trainer(tmp_path, [scheduler], max_epochs=2).fit(model, many_tokens_loader())
    clipped = float(model.trainer.callback_metrics["skd/q_n_clipped"])
    messages = [str(w.message) for w in seen if "q_n sat at its clip" in str(w.message)]
    if degenerate:  # exp(-1e-6 * d) ~ 1 > 0.5: every q_n is clipped
        assert clipped == 1.0 and len(messages) == 1 and "sigma='auto'" in messages[0]
    else:  # exp(-50 * d) ~ 0: none is
        assert clipped == 0.0 and not messages


def test_skd_alpha_scheduler_clip_rule_has_both_sides():
    scheduler = SKDAlphaScheduler()
    assert scheduler.q_n_is_degenerate(0.95, 100) and not scheduler.q_n_is_degenerate(0.94, 100)
    assert not scheduler.q_n_is_degenerate(1.0, 99)
