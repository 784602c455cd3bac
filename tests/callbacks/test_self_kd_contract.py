"""Property test of the SelfKDCallback contract: every step's loss and d loss / d logits are Kim et al.'s Eq. 6.

Each case is drawn from a seeded generator: class targets with ``(B, C)`` logits or token targets with ``(B, T, V)``
logits and random padding masks (padding anywhere, some samples without tokens), fp32 or bf16 logits, cache mode (in
memory or on disk; dense or top-k; float32 / float16 / bfloat16 storage) or snapshot mode, a constant alpha in
[0, 1] (0 and 1 included), CutMix / Mixup targets (class targets only) on some batches, and epochs in which some
samples are missing and others are met twice.

A real ``pl.Trainer`` trains a table of logits (``logits(i) = table[i]``, SGD) for 2 epochs through
``lightning_skd.self_kd_loss``. For every training step of both epochs the test recomputes, in float64, the Eq. 6
soft targets ``s = (1 - alpha) onehot(y) + alpha P_teacher`` (mixed: ``lam s_i + (1 - lam) s_perm[i]``), the loss
``mean over non-padding rows of -sum_c s_c log softmax(z)_c`` and its gradient ``(softmax(z) - s) / R``, and compares
them with what the callback returned and what backward produced. The teacher comes from an independent simulation of
the documented behaviour, never from the cache's own read:

* cache: the logits a sample got at the step of its first write in an earlier epoch, softmax, top-k renormalised and
  rounded to the storage dtype; a sample is written by un-mixed batches only, the first write of an epoch wins, and
  in memory a row already written in the current epoch is no teacher (hard label), while the disk cache reads the
  previous epoch's committed generation;
* snapshot: the end-of-previous-epoch table applied to the batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from lightning_skd import SelfKDCallback, self_kd_loss
from lightning_skd.callbacks.prediction_table import PredictionTable, TeacherRows
from lightning_skd.regularizers.mixing import MixInfo
from tests.helpers.trainer import quiet_trainer

IGNORE = -100
EPOCHS = 2
LR = 0.05  # small enough that SGD keeps every row's logits at least 0.1 apart (see `spaced_logits`)
NUM_CASES = 64
NUM_IGNORE_CASES = 8
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Tolerances. The reference is float64; the callback computes the loss in float32 (also for bf16 logits, which it
# upcasts before log_softmax), so loss and fp32 gradient agree to float32 rounding on any x86 CPU:
LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-6
# bf16 logits get a bf16 gradient: the float32 gradient rounded to nearest, relative error <= 2**-9; allow 2**-8.
GRAD_RTOL_BF16 = 2.0**-8
# Teacher probabilities: the callback takes the softmax in float32 and rounds it to the storage dtype; the reference
# rounds the float64 softmax. The two roundings of values that differ by ~1e-7 can land one ulp apart: ulp(p) <=
# 2**-(mantissa bits) * p. Top-k renormalisation by the (also rounded) kept mass at most doubles that; 2e-6 covers the
# float32 softmax itself (a few ulp). float16 has subnormals below 6.1e-5: there the error is absolute, one subnormal
# step 2**-24, amplified by at most 8 (num_classes) by the renormalisation. Each teacher entry's error bound, times
# alpha (and the mix weights), is propagated exactly into the loss (times |log q|) and the gradient (divided by R).
TEACHER_ULP = {"float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}
TEACHER_SUBNORMAL = {"float32": 0.0, "float16": 8 * 2.0**-24, "bfloat16": 0.0}
SOFTMAX_RTOL = 2e-6


# ---------------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    seed: int
    kind: str  # "class": logits (B, C), target (B,); "token": logits (B, T, V), target (B, T)
    num_samples: int
    batch_size: int
    num_classes: int  # C, or the vocabulary V
    max_tokens: int  # T (token cases)
    logits_dtype: torch.dtype
    mode: str  # "cache" or "snapshot"
    storage: str  # "memory" or "disk" (cache mode)
    cache_dtype: str
    topk: int | None
    alpha: float
    mix: bool  # CutMix / Mixup on some batches (class targets only)
    ignored: bool  # class targets with -100 rows (the ignore_index fix)


class Draw:
    """Random draws from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def uniform(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def integer(self, low: int, high: int) -> int:
        """Uniform in [low, high]."""
        return int(torch.randint(low, high + 1, (), generator=self.generator))

    def choice(self, options: list):
        return options[self.integer(0, len(options) - 1)]

    def rand(self, *shape: int) -> Tensor:
        return torch.rand(*shape, generator=self.generator)

    def permutation(self, n: int) -> Tensor:
        return torch.randperm(n, generator=self.generator)


def draw_case(seed: int, ignored: bool = False) -> Case:
    draw = Draw(seed)
    kind = "class" if ignored else draw.choice(["class", "token"])
    batch_size = draw.integer(2, 5)
    num_samples = draw.integer(batch_size + 2, 12)
    if num_samples % batch_size == 1:  # no last batch of one sample: every batch keeps a row to average over
        num_samples += 1
    num_classes = draw.integer(2, 8)
    mode = "snapshot" if draw.uniform() < 0.25 else "cache"
    storage, cache_dtype, topk = "memory", "float32", None
    if mode == "cache":
        storage = "disk" if draw.uniform() < 0.25 else "memory"
        cache_dtype = draw.choice(["float32", "float16"] + (["bfloat16"] if storage == "memory" else []))
        if draw.uniform() < 0.5:
            topk = draw.integer(1, num_classes)
    r = draw.uniform()
    alpha = 0.0 if r < 0.15 else 1.0 if r < 0.3 else draw.uniform()
    return Case(
        seed=seed,
        kind=kind,
        num_samples=num_samples,
        batch_size=batch_size,
        num_classes=num_classes,
        max_tokens=draw.integer(1, 5),
        logits_dtype=draw.choice([torch.float32, torch.bfloat16]),
        mode=mode,
        storage=storage,
        cache_dtype=cache_dtype,
        topk=topk,
        alpha=alpha,
        mix=kind == "class" and not ignored and draw.uniform() < 0.5,
        ignored=ignored,
    )


def spaced_logits(draw: Draw, *shape: int) -> Tensor:
    """Random logits whose values in each row are >= 0.3 apart and within +-8.

    Each row is ``scale * (rank - (C - 1) / 2 + 0.4 u)`` with a random ranking, ``u ~ U[0, 1)`` and ``scale`` in
    [0.5, 2]. SGD at ``LR`` moves a logit by at most ``LR`` per step (|softmax - s| <= 1, R >= the sample's rows) and a
    sample is met at most twice per epoch, so values stay > 0.1 apart, more than a bf16 ulp below 8 (2**-5): no ties,
    neither in the logits nor in their top-k, and the teacher's argmax is unique.
    """
    *rows, width = shape
    ranks = draw.rand(*rows, width).argsort(dim=-1).float()
    scale = 0.5 + 1.5 * draw.rand(*rows, 1)
    return scale * (ranks - (width - 1) / 2 + 0.4 * draw.rand(*rows, width))


@dataclass
class Data:
    targets: Tensor  # (N,) or (N, T) with IGNORE
    table: Tensor  # (N, C) or (N, T, V) initial logits
    plans: list[Tensor]  # per epoch, the order in which samples are met
    mixes: dict[tuple[int, int], MixInfo | None]  # (epoch, batch_idx) -> how the batch is mixed


def batches_of(plan: Tensor, batch_size: int) -> list[Tensor]:
    return list(plan.split(batch_size))


def draw_data(case: Case) -> Data:
    draw = Draw(10_000 + case.seed)
    n, c, t = case.num_samples, case.num_classes, case.max_tokens
    if case.kind == "class":
        targets = torch.randint(0, c, (n,), generator=draw.generator)
        if case.ignored:
            targets[draw.permutation(n)[: draw.integer(1, 2)]] = IGNORE
        table = spaced_logits(draw, n, c)
        rows_of = targets != IGNORE  # (N,) rows per sample
    else:
        lengths = torch.tensor([draw.integer(1, t) for _ in range(n)])
        if draw.uniform() < 0.3:
            lengths[draw.integer(0, n - 1)] = 0  # a sample without target tokens
        # padding anywhere, not only at the end: the first lengths[i] positions of a random order are tokens
        order = draw.rand(n, t).argsort(dim=-1)
        mask = torch.zeros(n, t, dtype=torch.bool).scatter(1, order, torch.arange(t) < lengths[:, None])
        targets = torch.randint(0, c, (n, t), generator=draw.generator).masked_fill(~mask, IGNORE)
        table = spaced_logits(draw, n, t, c)
        rows_of = mask.sum(dim=1)
    plans = []
    for _ in range(EPOCHS):
        while True:
            plan = draw.permutation(n)
            if draw.uniform() < 0.5:  # some samples missing this epoch, as many met twice (possibly in one batch)
                moved = draw.integer(1, n // 3)
                positions = draw.permutation(n)[: 2 * moved]
                plan[positions[:moved]] = plan[positions[moved:]]
            if all(bool(rows_of[b].sum() > 0) for b in batches_of(plan, case.batch_size)):
                break
        plans.append(plan)
    mixes = {}
    for epoch, plan in enumerate(plans):
        batches = batches_of(plan, case.batch_size)
        # with mixing on, some batches of each epoch are mixed and some are not (those write the cache)
        mixed = set(draw.permutation(len(batches))[: draw.integer(1, len(batches) - 1)].tolist()) if case.mix else ()
        for batch_idx, batch in enumerate(batches):
            mixes[(epoch, batch_idx)] = None
            if batch_idx in mixed:
                r = draw.uniform()
                lam = 0.0 if r < 0.1 else 1.0 if r < 0.2 else draw.uniform()
                mixes[(epoch, batch_idx)] = MixInfo(perm=draw.permutation(len(batch)), lam=lam)
    return Data(targets=targets, table=table, plans=plans, mixes=mixes)


# ---------------------------------------------------------------------------------------------------- training
class PlannedSampler(Sampler[int]):
    """Meets the samples in ``plans[epoch]`` (Lightning calls ``set_epoch``)."""

    def __init__(self, plans: list[Tensor]) -> None:
        self.plans, self.epoch = plans, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(self.plans[self.epoch].tolist())

    def __len__(self) -> int:
        return len(self.plans[0])


class LogitTable(pl.LightningModule):
    """``logits(i) = table[i]`` in the case's dtype; records every step's logits (with their gradient) and loss."""

    def __init__(self, table: Tensor, logits_dtype: torch.dtype, mixes: dict) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())
        self.logits_dtype = logits_dtype
        self.mixes = mixes
        self.steps: list[dict] = []
        self.tables: dict[int, Tensor] = {}  # end-of-epoch weights: the snapshot teacher of the next epoch

    def forward(self, index: Tensor) -> Tensor:
        return self.table[index].to(self.logits_dtype)

    def training_step(self, batch, batch_idx):
        inputs, target, index = batch
        logits = self(inputs)
        logits.retain_grad()  # d loss / d logits, from Lightning's own backward
        mix = self.mixes[(self.current_epoch, batch_idx)]
        loss = self_kd_loss(self, logits, target, mix=mix)
        record = {"epoch": self.current_epoch, "index": index, "target": target, "logits": logits, "mix": mix}
        self.steps.append(record | {"loss": loss.detach().clone()})
        return loss

    def on_train_epoch_end(self) -> None:
        self.tables[self.current_epoch] = self.table.detach().clone()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def make_callback(case: Case, root: Path) -> SelfKDCallback:
    if case.mode == "snapshot":
        return SelfKDCallback(mode="snapshot", alpha_T=case.alpha, schedule="constant")
    return SelfKDCallback(
        mode="cache",
        alpha_T=case.alpha,
        schedule="constant",
        cache_dtype=case.cache_dtype,
        cache_topk=case.topk,
        cache_dir=str(root / "cache") if case.storage == "disk" else None,
    )


def fit(case: Case, root: Path) -> tuple[Data, LogitTable, SelfKDCallback, pl.Trainer]:
    data = draw_data(case)
    index = torch.arange(case.num_samples)
    dataset = TensorDataset(index, data.targets, index)
    if case.kind == "token":
        dataset.target_lengths = (data.targets != IGNORE).sum(dim=1)  # what the token cache is sized from
    loader = DataLoader(dataset, batch_size=case.batch_size, sampler=PlannedSampler(data.plans))
    model = LogitTable(data.table, case.logits_dtype, data.mixes)
    callback = make_callback(case, root)
    fit_trainer = quiet_trainer([callback], max_epochs=EPOCHS, default_root_dir=root, log_every_n_steps=1)
    fit_trainer.fit(model, loader)
    assert len(model.steps) == EPOCHS * len(loader)
    return data, model, callback, fit_trainer


# ---------------------------------------------------------------------------------------------------- reference
def stored_teacher(logits: Tensor, case: Case) -> tuple[Tensor, Tensor]:
    """Teacher rows ``(R, C)`` float64 from past logits ``(R, C)`` as the docs define, and their error bound."""
    probs = logits.double().softmax(dim=-1)
    if case.mode == "snapshot":
        return probs, SOFTMAX_RTOL * probs
    dtype = STORAGE_DTYPES[case.cache_dtype]
    ulp, subnormal = TEACHER_ULP[case.cache_dtype], TEACHER_SUBNORMAL[case.cache_dtype]
    if case.topk is None:
        teacher = probs.to(dtype).double()
    else:
        values, class_ids = probs.topk(case.topk, dim=-1)
        values = values.to(dtype).double()
        teacher = torch.zeros_like(probs).scatter(-1, class_ids, values / values.sum(dim=-1, keepdim=True))
    return teacher, (2 * ulp + SOFTMAX_RTOL) * teacher + subnormal


@dataclass
class Reference:
    loss: Tensor  # ()
    loss_tol: Tensor  # ()
    grad: Tensor  # like the logits
    grad_tol: Tensor  # like the logits
    rows: Tensor  # (B,) or (B, T) bool: the positions that are rows (not padding / ignored)
    target: Tensor  # (R,)
    teacher: Tensor  # (R, C) un-mixed teacher probabilities (zeros without a teacher)
    valid: Tensor  # (R,) bool: the row has a teacher


class SimulatedTeachers:
    """What each sample's teacher is, from the recorded steps in training order (cache) or end-of-epoch tables.

    In memory a row written in the current epoch replaces its teacher: a sample met twice in one epoch has no teacher
    the second time. The disk cache reads the generation committed at the end of the previous epoch, so it keeps the
    teacher both times (both as documented in MemoryPredictionTable and MemmapPredictionTable).
    """

    def __init__(self, case: Case, model: LogitTable) -> None:
        self.case, self.model = case, model
        self.written: dict[int, tuple[int, Tensor]] = {}  # cache: sample -> (epoch, its logits at that write)
        self.committed: dict[int, tuple[int, Tensor]] = {}  # ``written`` at the end of the previous epoch
        self.epoch = 0

    def source(self, sample: int, epoch: int) -> Tensor | None:
        """Past logits ``(C,)`` / ``(T, V)`` the teacher of ``sample`` at ``epoch`` comes from, or None."""
        if self.case.mode == "snapshot":
            return self.model.tables[epoch - 1][sample].to(self.case.logits_dtype) if epoch > 0 else None
        if epoch != self.epoch:
            self.committed, self.epoch = dict(self.written), epoch
        written = (self.committed if self.case.storage == "disk" else self.written).get(sample)
        return written[1] if written is not None and written[0] < epoch else None

    def after_step(self, step: dict, rows: Tensor) -> None:
        """Cache writes: un-mixed batches only; per sample the first write of an epoch wins; no rows, no write."""
        if self.case.mode != "cache" or step["mix"] is not None:
            return
        for b, sample in enumerate(step["index"].tolist()):
            if bool(rows[b].any()) and self.written.get(sample, (None,))[0] != step["epoch"]:
                self.written[sample] = (step["epoch"], step["logits"][b].detach())


def reference_step(case: Case, step: dict, teachers: SimulatedTeachers) -> Reference:
    logits = step["logits"].detach()
    target = step["target"]
    rows = target != IGNORE  # (B,) or (B, T)
    num_classes = logits.shape[-1]
    z = logits[rows].double()  # (R, C)
    y = target[rows]  # (R,)
    teacher_rows, tol_rows, valid_rows = [], [], []
    for b, sample in enumerate(step["index"].tolist()):
        count = int(rows[b].sum())
        source = teachers.source(sample, step["epoch"])
        if source is None:
            teacher_rows.append(torch.zeros(count, num_classes, dtype=torch.float64))
            tol_rows.append(torch.zeros(count, num_classes, dtype=torch.float64))
        else:
            past = source[None] if case.kind == "class" else source
            teacher, tol = stored_teacher(past[rows[b].reshape(-1)], case)
            teacher_rows.append(teacher)
            tol_rows.append(tol)
        valid_rows.append(torch.full((count,), source is not None))
    teacher, teacher_tol, valid = torch.cat(teacher_rows), torch.cat(tol_rows), torch.cat(valid_rows)

    weight = case.alpha * valid.double()[:, None]  # (R, 1): rows without a teacher train on the hard label
    soft = (1 - weight) * F.one_hot(y, num_classes).double() + weight * teacher  # Eq. 6
    soft_tol = weight * teacher_tol
    mix = step["mix"]
    if mix is not None:
        soft = mix.lam * soft + (1 - mix.lam) * soft[mix.perm]
        soft_tol = mix.lam * soft_tol + (1 - mix.lam) * soft_tol[mix.perm]
    log_q = z.log_softmax(dim=-1)
    num_rows = len(z)
    loss = -(soft * log_q).sum(dim=-1).mean()
    loss_tol = LOSS_ATOL + LOSS_RTOL * loss.abs() + (soft_tol * log_q.abs()).sum(dim=-1).mean()
    grad = torch.zeros(logits.shape, dtype=torch.float64)
    grad[rows] = (log_q.exp() - soft) / num_rows
    grad_rtol = GRAD_RTOL_BF16 if case.logits_dtype == torch.bfloat16 else GRAD_RTOL
    grad_tol = GRAD_ATOL + grad_rtol * grad.abs()
    grad_tol[rows] += soft_tol / num_rows
    return Reference(loss, loss_tol, grad, grad_tol, rows, y, teacher, valid)


def check_step(case: Case, step: dict, ref: Reference) -> None:
    where = f"{case}, epoch {step['epoch']}, samples {step['index'].tolist()}"
    loss = step["loss"].double()
    assert (loss - ref.loss).abs() <= ref.loss_tol, f"loss {float(loss)} != reference {float(ref.loss)} ({where})"
    grad = step["logits"].grad
    assert grad is not None and grad.dtype == case.logits_dtype, where
    assert torch.count_nonzero(grad[~ref.rows]) == 0, f"gradient at padding / ignored positions ({where})"
    error = (grad.double() - ref.grad).abs()
    bad = (error > ref.grad_tol).nonzero()
    assert not len(bad), (
        f"gradient differs at {bad[0].tolist()}: {float(grad[tuple(bad[0])])} != reference "
        f"{float(ref.grad[tuple(bad[0])])} ({len(bad)} entries, {where})"
    )


def check_run(case: Case, model: LogitTable, fit_trainer: pl.Trainer) -> None:
    """Check every step of both epochs and the last epoch's teacher statistics against the reference."""
    teachers = SimulatedTeachers(case, model)
    valid_rows = agreeing_rows = all_rows = 0
    for step in model.steps:
        ref = reference_step(case, step, teachers)
        check_step(case, step, ref)
        teachers.after_step(step, ref.rows)
        if step["epoch"] == EPOCHS - 1:  # statistics of the un-mixed rows' own teachers, mixed batches included
            all_rows += len(ref.target)
            valid_rows += int(ref.valid.sum())
            agreeing_rows += int((ref.valid & (ref.teacher.argmax(dim=-1) == ref.target)).sum())
    assert valid_rows > 0, f"the case never met a teacher: {case}"
    metrics = fit_trainer.callback_metrics
    assert float(metrics["skd/teacher_coverage"]) == pytest.approx(valid_rows / all_rows, abs=1e-6), case
    assert float(metrics["skd/teacher_acc"]) == pytest.approx(agreeing_rows / valid_rows, abs=1e-6), case


# ---------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", range(NUM_CASES))
def test_self_kd_callback_loss_and_gradient_equal_eq6_reference(seed, tmp_path, one_thread):
    case = draw_case(seed)
    _, model, _, fit_trainer = fit(case, tmp_path)
    check_run(case, model, fit_trainer)


@pytest.mark.parametrize("seed", range(NUM_CASES, NUM_CASES + NUM_IGNORE_CASES))
def test_self_kd_callback_class_ignore_index_rows_get_no_loss_gradient_cache_row_or_statistics(
    seed, tmp_path, one_thread
):
    case = draw_case(seed, ignored=True)
    data, model, callback, fit_trainer = fit(case, tmp_path)
    check_run(case, model, fit_trainer)  # no loss, no gradient, no teacher statistics at -100 rows
    for step in model.steps:
        if step["epoch"] == 0:  # no teacher yet: the loss is cross_entropy's mean over the non-ignored rows
            expected = F.cross_entropy(step["logits"].detach().float(), step["target"], ignore_index=IGNORE)
            torch.testing.assert_close(step["loss"], expected, rtol=LOSS_RTOL, atol=LOSS_ATOL)
    if case.mode == "cache" and case.storage == "memory":
        state = callback.state_dict()["teacher"]["table"]
        ignored = data.targets == IGNORE
        assert bool((state["stamps"][ignored] == -1).all()), "an ignored sample got a cache row"
        assert torch.count_nonzero(state["values"][ignored]) == 0


def test_self_kd_contract_cases_cover_every_option():
    cases = [draw_case(seed) for seed in range(NUM_CASES)]

    def values(field: str) -> set:
        return {getattr(case, field) for case in cases}

    assert values("kind") == {"class", "token"}
    assert values("logits_dtype") == {torch.float32, torch.bfloat16}
    assert values("mode") == {"cache", "snapshot"}
    assert values("storage") == {"memory", "disk"}
    assert values("mix") == {True, False}
    cached = [case for case in cases if case.mode == "cache"]
    assert {(case.storage, case.cache_dtype) for case in cached} == {
        ("memory", "float32"),
        ("memory", "float16"),
        ("memory", "bfloat16"),
        ("disk", "float32"),
        ("disk", "float16"),
    }
    assert {case.topk is None for case in cached} == {True, False}
    assert any(case.topk == case.num_classes for case in cached)  # top-k that keeps every class
    assert {case.kind for case in cached if case.topk is not None} == {"class", "token"}
    assert {0.0, 1.0} <= values("alpha") and any(0.0 < case.alpha < 1.0 for case in cases)
    assert {case.kind for case in cases if case.mode == "snapshot"} == {"class", "token"}
    ignored = [draw_case(seed, ignored=True) for seed in range(NUM_CASES, NUM_CASES + NUM_IGNORE_CASES)]
    assert {case.mode for case in ignored} == {"cache", "snapshot"}
    assert any(case.mode == "cache" and case.storage == "memory" for case in ignored)  # the cache-row check runs


def _alpha_off_by_0_1(monkeypatch) -> None:
    monkeypatch.setattr(SelfKDCallback, "alpha_for_epoch", lambda self, epoch, max_epochs: self.alpha_T + 0.1)


def _teacher_rows_rolled_by_one(monkeypatch) -> None:
    read_teacher = PredictionTable.read_teacher

    def rolled(self, keys, epoch):
        teacher = read_teacher(self, keys, epoch)
        class_ids = None if teacher.class_ids is None else teacher.class_ids.roll(1, 0)
        return TeacherRows(teacher.values.roll(1, 0), class_ids, teacher.valid.roll(1, 0))

    monkeypatch.setattr(PredictionTable, "read_teacher", rolled)


@pytest.mark.parametrize(
    ("mutation", "kind"),
    [
        (_alpha_off_by_0_1, "class"),
        (_alpha_off_by_0_1, "token"),
        (_teacher_rows_rolled_by_one, "class"),
        (_teacher_rows_rolled_by_one, "token"),
    ],
    ids=["alpha-class", "alpha-token", "roll-class", "roll-token"],
)
def test_self_kd_contract_reference_rejects_a_mutated_callback(mutation, kind, tmp_path, monkeypatch, one_thread):
    """The comparison is sensitive: a callback with alpha off by 0.1, or teachers shifted by one row, fails it."""
    case = dataclasses.replace(
        draw_case(0), kind=kind, mode="cache", storage="memory", alpha=0.5, mix=False, topk=None, cache_dtype="float16"
    )
    _, model, _, fit_trainer = fit(case, tmp_path / "exact")
    check_run(case, model, fit_trainer)  # the un-mutated callback passes
    mutation(monkeypatch)
    _, model, _, fit_trainer = fit(case, tmp_path / "mutated")
    with pytest.raises(AssertionError):
        check_run(case, model, fit_trainer)
