"""Token-level Self-KD: (B, T, V) logits, (B, T) targets with padding, on a model whose outputs the test controls."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightning_skd import SelfKDCallback, self_kd_loss
from lightning_skd.regularizers.mixing import MixInfo
from tests.helpers.trainer import quiet_trainer

NUM_SAMPLES, MAX_TOKENS, VOCAB = 10, 5, 6
ALPHA_T, EPOCHS = 0.6, 3


class TokenDataset(Dataset):
    """Item ``i``: (i as the input, (T,) target ids with -100 after ``target_lengths[i]`` tokens, i)."""

    def __init__(self, lengths: torch.Tensor | None = None) -> None:
        generator = torch.Generator().manual_seed(0)
        self.target_lengths = (
            lengths if lengths is not None else torch.randint(1, MAX_TOKENS + 1, (NUM_SAMPLES,), generator=generator)
        )
        targets = torch.randint(0, VOCAB, (NUM_SAMPLES, MAX_TOKENS), generator=generator)
        self.targets = targets.masked_fill(torch.arange(MAX_TOKENS) >= self.target_lengths[:, None], -100)

    def __len__(self) -> int:
        return NUM_SAMPLES

    def __getitem__(self, i: int):
        return torch.tensor(i), self.targets[i], torch.tensor(i)


def loader(dataset: Dataset | None = None) -> DataLoader:
    dataset = dataset or TokenDataset()
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)  # order = f(epoch)
    return DataLoader(dataset, batch_size=4, sampler=sampler)


class TokenTable(pl.LightningModule):
    """logits(i) = table[i], (T, V): the teacher of every (sample, position) is known from the recorded tables."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(
            torch.randn(NUM_SAMPLES, MAX_TOKENS, VOCAB, generator=torch.Generator().manual_seed(1))
        )
        self.records: dict[tuple[int, int], dict[str, torch.Tensor]] = {}  # (epoch, index) -> logits, soft, loss
        self.tables: dict[int, torch.Tensor] = {}  # end-of-epoch weights

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index]  # (B, T, V)

    def training_step(self, batch, batch_idx):
        index, target, _ = batch
        logits = self(index)
        logits.retain_grad()  # the test reads d loss / d logits after Lightning's backward
        loss = self_kd_loss(self, logits, target)
        callback = next((cb for cb in self.trainer.callbacks if isinstance(cb, SelfKDCallback)), None)
        soft = callback.soft_targets(target) if callback is not None else None
        for row, i in enumerate(index.tolist()):
            self.records[(self.current_epoch, i)] = {
                "logits": logits[row].detach().clone(),
                "soft": None if soft is None else soft[row].clone(),
            }
        self.last_batch = (logits, target, loss, soft)
        return loss

    def on_train_epoch_end(self) -> None:
        self.tables[self.current_epoch] = self.table.detach().clone()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=5.0)


def fit(callback: SelfKDCallback | None, root: Path, epochs: int = EPOCHS, ckpt_path=None, dataset=None, **kwargs):
    pl.seed_everything(0)
    model = TokenTable()
    callbacks = [callback] if callback is not None else []
    trainer = quiet_trainer(
        callbacks + [ModelCheckpoint(dirpath=root, save_top_k=-1, filename="{epoch}")],
        max_epochs=epochs,
        default_root_dir=root,
        enable_checkpointing=True,
        **kwargs,
    )
    trainer.fit(model, loader(dataset), ckpt_path=ckpt_path)
    return model


def eq6(target: torch.Tensor, teacher_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """(T,) targets, (T, V) teacher -> (T, V) Eq. 6 soft targets, zero rows at padding."""
    real = target != -100
    onehot = F.one_hot(target.clamp_min(0), VOCAB).float()
    return ((1 - alpha) * onehot + alpha * teacher_probs) * real[:, None]


def topk_renormalised(probs: torch.Tensor, k: int) -> torch.Tensor:
    values, ids = probs.topk(k, dim=-1)
    values = values.half().float()
    return torch.zeros_like(probs).scatter(-1, ids, values / values.sum(-1, keepdim=True))


@pytest.mark.parametrize("mode", ["cache", "cache-top3-float16", "snapshot"])
def test_self_kd_callback_token_soft_targets_are_eq6_at_every_real_token(mode, tmp_path):
    kwargs = {"cache_topk": 3, "cache_dtype": "float16"} if mode == "cache-top3-float16" else {}
    callback = SelfKDCallback(mode="snapshot" if mode == "snapshot" else "cache", alpha_T=ALPHA_T, **kwargs)
    model = fit(callback, tmp_path)
    targets = TokenDataset().targets
    for (epoch, index), record in model.records.items():
        target = targets[index]
        if epoch == 0:
            torch.testing.assert_close(record["soft"], eq6(target, torch.zeros(MAX_TOKENS, VOCAB), 0.0))
            continue
        if mode == "snapshot":  # the end-of-previous-epoch weights, teacher-forced on the same input
            teacher = model.tables[epoch - 1][index].softmax(-1)
        else:  # the token's own prediction made during the previous epoch
            teacher = model.records[(epoch - 1, index)]["logits"].softmax(-1)
            if kwargs:
                teacher = topk_renormalised(teacher, 3)
        torch.testing.assert_close(record["soft"], eq6(target, teacher, ALPHA_T * (epoch + 1) / EPOCHS))


@pytest.mark.parametrize("mode", ["cache", "snapshot"])
def test_self_kd_callback_token_padding_adds_zero_loss_and_zero_gradient(mode, tmp_path):
    model = fit(SelfKDCallback(mode=mode, alpha_T=ALPHA_T, cache_topk=3 if mode == "cache" else None), tmp_path)
    logits, target, loss, soft = model.last_batch  # last batch of the last epoch: it has teachers
    real = target != -100
    assert (~real).any() and real.any()
    # the loss is Eq. 6's cross-entropy averaged over the real tokens only
    reference = -(soft * logits.detach().log_softmax(-1)).sum(-1)[real].mean()
    torch.testing.assert_close(loss.detach(), reference)
    # and its gradient w.r.t. padded positions' logits (from the training step's own backward) is exactly zero
    grad = logits.grad
    assert torch.count_nonzero(grad[~real]) == 0
    assert torch.count_nonzero(grad[real]) > 0


def test_self_kd_loss_without_callback_is_token_cross_entropy_over_real_tokens(tmp_path):
    model = fit(None, tmp_path, epochs=1)
    logits, target, loss, _ = model.last_batch
    real = target != -100
    reference = F.cross_entropy(logits.detach()[real], target[real])
    torch.testing.assert_close(loss.detach(), reference)


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_self_kd_callback_token_cache_resume_after_epoch_equals_uninterrupted(storage, tmp_path):
    def callback():
        kwargs = {"cache_dir": str(tmp_path / "cache"), "cache_keep_generations": 4} if storage == "disk" else {}
        return SelfKDCallback(mode="cache", alpha_T=ALPHA_T, cache_topk=3, cache_dtype="float16", **kwargs)

    full = fit(callback(), tmp_path / "full", epochs=4)
    resumed = fit(callback(), tmp_path / "resumed", epochs=4, ckpt_path=str(tmp_path / "full" / "epoch=1.ckpt"))
    for epoch in (2, 3):
        for index in range(NUM_SAMPLES):
            torch.testing.assert_close(resumed.records[(epoch, index)]["soft"], full.records[(epoch, index)]["soft"])
    torch.testing.assert_close(resumed.table, full.table)


def test_self_kd_callback_token_cache_refuses_a_changed_tokenisation_on_resume(tmp_path):
    fit(SelfKDCallback(mode="cache", alpha_T=ALPHA_T), tmp_path / "full", epochs=2)
    lengths = TokenDataset().target_lengths.clone()
    lengths[3] = MAX_TOKENS + 1 - lengths[3]  # another tokeniser: sample 3 has another number of tokens
    with pytest.raises(ValueError, match="changed their number of target tokens.*first: sample 3"):
        fit(
            SelfKDCallback(mode="cache", alpha_T=ALPHA_T),
            tmp_path / "resumed",
            epochs=3,
            ckpt_path=str(tmp_path / "full" / "epoch=1.ckpt"),
            dataset=TokenDataset(lengths),
        )


class NoLengths(TokenDataset):
    def __init__(self) -> None:
        super().__init__()
        del self.target_lengths


def test_self_kd_callback_token_cache_needs_target_lengths(tmp_path):
    with pytest.raises(ValueError, match="train_target_lengths\\(\\)"):
        fit(SelfKDCallback(mode="cache"), tmp_path, epochs=1, dataset=NoLengths())


def test_self_kd_callback_token_cache_refuses_lengths_that_disagree_with_the_batches(tmp_path):
    dataset = TokenDataset()
    dataset.target_lengths = dataset.target_lengths + 1  # the data module reports other lengths than it batches
    with pytest.raises(ValueError, match="target tokens in this batch but"):
        fit(SelfKDCallback(mode="cache"), tmp_path, epochs=2, dataset=dataset)


class FlattenedLoss(TokenTable):
    """Calls self_kd_loss with the tokens flattened to (B*T, V): not the batch's own (B, T) target layout."""

    def training_step(self, batch, batch_idx):
        index, target, _ = batch
        return self_kd_loss(self, self(index).flatten(0, 1), target.flatten())


class MixedTokens(TokenTable):
    def training_step(self, batch, batch_idx):
        index, target, _ = batch
        return self_kd_loss(self, self(index), target, mix=MixInfo(torch.arange(len(index)), 0.5))


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (FlattenedLoss, "the training batch's target has shape"),
        (MixedTokens, "defined for \\(B, C\\) classification, not for token targets"),
    ],
)
def test_self_kd_callback_token_contract_violations_fail_on_the_first_batch(module, message, tmp_path, trainer_factory):
    trainer = trainer_factory([SelfKDCallback(mode="snapshot")], max_epochs=1, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        trainer.fit(module(), loader())
