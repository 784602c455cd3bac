"""The demo's verdict says an effect only when the paired 95 % interval excludes 0."""

from lightning_skd.compare import Summary
from lightning_skd.tools.demo import SELF_KD, SWEEP, verdict


def table(nll: tuple[float, float, float], ece: tuple[float, float, float]) -> dict:
    return {SELF_KD: {"test/nll": Summary(0.1, 0.01, *nll), "test/ece": Summary(0.02, 0.01, *ece)}}


def test_verdict_reports_effect_only_outside_seed_noise():
    lines = verdict(table(nll=(-0.02, -0.03, -0.01), ece=(-0.005, -0.01, 0.001)))
    assert "lowers NLL" in lines[0] and "excludes 0" in lines[0]
    assert "within seed-to-seed noise, no effect shown" in lines[1]
    lines = verdict(table(nll=(0.02, 0.01, 0.03), ece=(0.01, 0.005, 0.02)))
    assert all("RAISES" in line for line in lines)


def test_demo_sweep_file_exists():
    assert SWEEP.is_file()
