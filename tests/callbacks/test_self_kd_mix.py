"""CutMix / Mixup with Self-KD without a callback or outside training; the mixed targets of a training run,
single-process and under DDP, are checked in tests/ddp/test_self_kd_mix.py."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lightning_skd import SelfKDCallback, self_kd_loss
from lightning_skd.regularizers import MixInfo


def test_self_kd_loss_without_callback_mixes_onehot_labels():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 1])
    mix = MixInfo(perm=torch.tensor([2, 3, 0, 1]), lam=0.3)
    loss = self_kd_loss(pl.LightningModule(), logits, target, mix=mix)
    expected = 0.3 * F.cross_entropy(logits, target) + 0.7 * F.cross_entropy(logits, target[mix.perm])
    torch.testing.assert_close(loss, expected)


def test_soft_targets_with_mix_outside_training_raises():
    with pytest.raises(RuntimeError, match="only available during a training batch"):
        SelfKDCallback().soft_targets(torch.tensor([0]), mix=MixInfo(perm=torch.tensor([0]), lam=1.0))
