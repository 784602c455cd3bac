"""TemperatureScaling under 2-process DDP (gloo): T is the single-process fit on the union of the validation splits."""

import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.ddp import fit_temperature_scaling
from tests.helpers.multiprocess import run_command

from .temperature_scaling_script import run

SCRIPT = Path(__file__).with_name("temperature_scaling_script.py")

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """``lightning-skd fit`` of the temperature-scaling digits config (8 steps); its folder and checkpoint."""
    return fit_temperature_scaling(tmp_path_factory.mktemp("ts_fit"))


def test_ddp_temperature_equals_the_single_process_fit_on_the_union(fitted, tmp_path):
    _, checkpoint = fitted
    # 359 validation images: 180 on rank 0, 179 on rank 1 (UnrepeatedDistributedSampler of the DataModule)
    run_command([sys.executable, str(SCRIPT), "--checkpoint", str(checkpoint), "--out", str(tmp_path)], tmp_path)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    single = run(checkpoint, tmp_path / "single", devices=1)
    assert ranks[0]["temperature"] == ranks[1]["temperature"]  # broadcast from rank 0
    assert ranks[0]["temperature"] == pytest.approx(single["temperature"], rel=1e-9)
    for key, value in single["metrics"].items():
        assert ranks[0]["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
