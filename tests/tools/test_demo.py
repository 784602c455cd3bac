"""The demo's verdict: an effect only when the paired 95 % interval excludes 0, checked on both halves of the seeds."""

import pytest

from lightning_skd.compare import Metric, Summary
from lightning_skd.tools.demo import SELF_KD, SWEEP, holds_on_both_halves, seed_halves, verdict

METRICS = [Metric("test/nll", "NLL"), Metric("test/ece", "ECE (%)", 100.0)]


def table(nll: tuple[float, float, float], ece: tuple[float, float, float]) -> dict:
    return {SELF_KD: {"test/nll": Summary(0.1, 0.01, *nll), "test/ece": Summary(0.02, 0.01, *ece)}}


def test_verdict_reports_effect_only_outside_seed_noise():
    lines = verdict(table(nll=(-0.02, -0.03, -0.01), ece=(-0.005, -0.01, 0.001)))
    assert "lowers NLL" in lines[0] and "excludes 0" in lines[0]
    assert "within seed-to-seed noise, no effect shown" in lines[1]
    lines = verdict(table(nll=(0.02, 0.01, 0.03), ece=(0.01, 0.005, 0.02)))
    assert all("RAISES" in line for line in lines)


def test_verdict_speaks_of_the_signed_calibration_parts_when_logged():
    summaries = {
        "test/oce": Summary(0.01, 0.0, -0.01, -0.02, -0.005),
        "test/uce": Summary(0.02, 0.0, 0.01, 0.005, 0.02),
    }
    lines = verdict({SELF_KD: summaries})
    assert len(lines) == 2
    assert lines[0].startswith(f"{SELF_KD} lowers over-confidence (OCE): -1.000 %")
    assert lines[1].startswith(f"{SELF_KD} RAISES under-confidence (UCE): +1.000 %")


@pytest.mark.parametrize(
    ("seeds", "halves"), [(range(10), ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])), ([3, 1, 4], ([3, 1], [4]))]
)
def test_seed_halves_splits_in_order(seeds, halves):
    assert seed_halves(seeds) == halves


def _runs(self_kd_minus_baseline: dict[str, list[float]]) -> dict[str, list[dict]]:
    """Baseline at 0.5 on every metric; Self-KD the baseline plus the given per-seed difference."""
    seeds = len(next(iter(self_kd_minus_baseline.values())))
    baseline = [{"metrics": {m.key: 0.5 for m in METRICS}} for _ in range(seeds)]
    self_kd = [{"metrics": {key: 0.5 + d[i] for key, d in self_kd_minus_baseline.items()}} for i in range(seeds)]
    return {"Baseline": baseline, SELF_KD: self_kd}


def test_holds_on_both_halves_tells_a_shared_effect_from_a_half_only_one():
    # NLL drops by about 0.1 on every seed; ECE rises on seeds 0-4 only and is noise on seeds 5-9.
    runs = _runs(
        {
            "test/nll": [-0.10, -0.11, -0.09, -0.10, -0.12, -0.10, -0.09, -0.11, -0.10, -0.10],
            "test/ece": [0.02, 0.021, 0.019, 0.02, 0.022, 0.01, -0.012, 0.005, -0.008, 0.001],
        }
    )
    nll, ece = holds_on_both_halves(runs, list(range(10)), "Baseline", METRICS)
    assert nll.startswith("NLL: holds on both halves (seeds 0–4: lowered, -0.104")
    assert "seeds 5–9: lowered" in nll
    assert ece.startswith("ECE: DOES NOT hold on both halves")
    assert "seeds 0–4: raised, +2.040 %" in ece and "seeds 5–9: no effect" in ece


def test_holds_on_both_halves_needs_two_seeds_per_half():
    runs = _runs({"test/nll": [0.1, 0.2, 0.1], "test/ece": [0.0, 0.0, 0.0]})
    assert holds_on_both_halves(runs, [0, 1, 2], "Baseline", METRICS)[0].startswith("(Fewer than 4 seeds")


def test_demo_sweep_file_exists():
    assert SWEEP.is_file()
