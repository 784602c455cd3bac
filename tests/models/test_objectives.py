"""The shared objective seam of the task modules: lightning_skd.objectives and hard_target_cross_entropy."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lightning_skd import EmbeddingSKDLoss, SelfKDCallback
from lightning_skd._constants import IGNORE_INDEX
from lightning_skd.callbacks import SKDAlphaScheduler
from lightning_skd.functional import hard_target_cross_entropy
from lightning_skd.models import ImageClassifier, LanguageModel, Translator
from lightning_skd.models.seq2seq import TransformerSeq2Seq
from lightning_skd.objectives import CrossEntropy, EmbeddingSKD, LabelSmoothing, build_objective
from lightning_skd.regularizers.mixing import MixInfo


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({}, CrossEntropy),
        ({"embedding_noise_std": 0.1}, CrossEntropy),
        ({"label_smoothing": 0.1}, LabelSmoothing),
        ({"skd": True, "sigma": "auto", "skd_lambda": 0.5}, EmbeddingSKD),
    ],
)
def test_build_objective_picks_one_strategy(kwargs, kind):
    objective = build_objective("Module", **kwargs)
    assert type(objective) is kind
    assert objective.noise_std(training=True) == kwargs.get("embedding_noise_std", 0.0)
    assert objective.noise_std(training=False) == 0.0


def test_build_objective_builds_the_skd_loss_from_the_arguments():
    objective = build_objective("Module", skd=True, sigma=0.3, skd_lambda=0.5, sigma_update_every=7, ignore_index=-1)
    loss = objective.skd_loss
    assert isinstance(loss, EmbeddingSKDLoss) and float(loss.alpha) == 0.0  # SKDAlphaScheduler drives it
    assert (float(loss.sigma), loss.lam, loss.sigma_update_every, loss.ignore_index) == pytest.approx((0.3, 0.5, 7, -1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"label_smoothing": 1.0}, r"Owner: `label_smoothing` must be a float in \[0, 1\), got 1.0"),
        ({"label_smoothing": True}, r"`label_smoothing` must be a float in \[0, 1\), got True"),
        ({"embedding_noise_std": float("nan")}, "Owner: `embedding_noise_std` must be a finite float >= 0, got nan"),
        ({"embedding_noise_std": -0.1}, r"`embedding_noise_std` must be a finite float >= 0, got -0\.1"),
        ({"label_smoothing": 0.1, "skd": True}, "Owner: label_smoothing=0.1 and skd=True both replace the hard target"),
        ({"skd": True, "sigma": -1.0}, "sigma must be a finite float > 0"),
    ],
)
def test_build_objective_refuses_bad_arguments_once_for_every_module(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_objective("Owner", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "callbacks", "match"),
    [
        ({"label_smoothing": 0.1}, [SelfKDCallback()], r"Owner\(label_smoothing=0.1\) and SelfKDCallback both soften"),
        ({"skd": True}, [SelfKDCallback(), SKDAlphaScheduler()], r"Owner\(skd=True\) and SelfKDCallback both replace"),
        ({"skd": True}, [], "Owner: skd=True needs an SKDAlphaScheduler in trainer.callbacks"),
        ({"self_kd": False}, [SelfKDCallback()], "Owner does not train with lightning_skd.self_kd_loss"),
    ],
)
def test_objective_refuses_callbacks_that_contradict_it(kwargs, callbacks, match):
    with pytest.raises(ValueError, match=match):
        build_objective("Owner", **kwargs).check_callbacks(callbacks)


@pytest.mark.parametrize(
    ("kwargs", "callbacks"),
    [({}, [SelfKDCallback()]), ({"label_smoothing": 0.1}, []), ({"skd": True}, [SKDAlphaScheduler()])],
)
def test_objective_accepts_the_defined_combinations(kwargs, callbacks):
    build_objective("Owner", **kwargs).check_callbacks(callbacks)


def test_cross_entropy_without_a_trainer_is_plain_cross_entropy_for_classes_and_tokens():
    torch.manual_seed(0)
    logits, target = torch.randn(4, 3, 5), torch.randint(0, 5, (4, 3))
    target[0, 1:] = IGNORE_INDEX
    expected = F.cross_entropy(logits.flatten(0, 1), target.flatten())
    module = pl.LightningModule()
    for objective in (build_objective("M"), build_objective("M", self_kd=False)):
        torch.testing.assert_close(objective.loss(module, logits, target), expected)
        torch.testing.assert_close(
            objective.loss(module, logits[:, 0], target[:, 1]), F.cross_entropy(logits[:, 0], target[:, 1])
        )


def test_label_smoothing_mixes_the_two_targets_like_the_images():
    torch.manual_seed(0)
    logits, target = torch.randn(4, 6), torch.tensor([0, 1, 2, 3])
    mix = MixInfo(perm=torch.tensor([2, 3, 0, 1]), lam=0.3)
    loss = build_objective("M", label_smoothing=0.2).loss(pl.LightningModule(), logits, target, mix=mix)
    own = F.cross_entropy(logits, target, label_smoothing=0.2)
    partner = F.cross_entropy(logits, target[mix.perm], label_smoothing=0.2)
    torch.testing.assert_close(loss, 0.3 * own + 0.7 * partner)


def test_hard_target_cross_entropy_of_tokens_matches_the_flattened_loss():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 7, dtype=torch.bfloat16), torch.randint(0, 7, (2, 4))
    target[1, 2:] = IGNORE_INDEX
    flat = logits.float().flatten(0, 1), target.flatten()
    for kwargs in ({}, {"label_smoothing": 0.1}):
        torch.testing.assert_close(
            hard_target_cross_entropy(logits, target, **kwargs), F.cross_entropy(*flat, **kwargs)
        )
    per_token = hard_target_cross_entropy(logits, target, reduction="none")
    assert per_token.shape == (2, 4) and per_token.dtype == torch.float32 and (per_token[1, 2:] == 0).all()


def test_language_model_refuses_self_kd_in_setup(tmp_path):
    trainer = pl.Trainer(callbacks=[SelfKDCallback()], logger=False, default_root_dir=tmp_path, accelerator="cpu")
    model = LanguageModel(vocab_size=11, embedding_dim=8, hidden_size=8)
    model.trainer = trainer
    with pytest.raises(ValueError, match="LanguageModel does not train with lightning_skd.self_kd_loss"):
        model.setup("fit")


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ImageClassifier("lightning_skd:small_cnn", in_channels=1, label_smoothing=-0.1), "ImageClassifier: "),
        (lambda: LanguageModel(vocab_size=11, embedding_noise_std=-1.0), "LanguageModel: `embedding_noise_std`"),
        (lambda: Translator(TransformerSeq2Seq, label_smoothing=0.1, skd=True), "Translator: label_smoothing=0.1"),
    ],
)
def test_every_module_checks_its_objective_arguments_through_the_seam(build, match):
    with pytest.raises(ValueError, match=match):
        build()
