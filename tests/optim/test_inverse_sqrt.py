import math

import pytest
import torch

from lightning_skd.optim import InverseSquareRootLR


def reference_lr(lr, step, warmup):
    # Vaswani et al. Eq. (3) with d_model^-0.5 replaced by lr * warmup^0.5 (so the peak is lr)
    return lr * min(step**-0.5, step * warmup**-1.5) * warmup**0.5


def lrs_seen(scheduler, optimizer, steps):
    seen = []
    for _ in range(steps):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("warmup", [1, 7, 100])
def test_inverse_square_root_lr_follows_the_formula_and_peaks_at_lr(warmup):
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.Adam([{"params": params[:1], "lr": 5e-4}, {"params": params[1:], "lr": 1e-3}])
    scheduler = InverseSquareRootLR(optimizer, warmup_steps=warmup)
    seen = lrs_seen(scheduler, optimizer, 3 * warmup + 5)
    for step, lrs in enumerate(seen, start=1):
        for lr, base in zip(lrs, (5e-4, 1e-3), strict=True):
            assert lr == pytest.approx(reference_lr(base, step, warmup), rel=1e-12)
    peak = max(range(len(seen)), key=lambda i: seen[i][0]) + 1
    assert peak == warmup and math.isclose(seen[peak - 1][1], 1e-3, rel_tol=1e-12)


def test_inverse_square_root_lr_resumes_from_its_state_dict():
    def make():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return optimizer, InverseSquareRootLR(optimizer, warmup_steps=5)

    optimizer, scheduler = make()
    full = lrs_seen(scheduler, optimizer, 12)
    optimizer, scheduler = make()
    lrs_seen(scheduler, optimizer, 6)
    state, optimizer_state = scheduler.state_dict(), optimizer.state_dict()
    optimizer, scheduler = make()
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(state)
    assert lrs_seen(scheduler, optimizer, 6) == full[6:]


@pytest.mark.parametrize("warmup", [0, -3, 2.5, True])
def test_inverse_square_root_lr_refuses_bad_warmup(warmup):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="`warmup_steps` must be an integer >= 1"):
        InverseSquareRootLR(optimizer, warmup_steps=warmup)
