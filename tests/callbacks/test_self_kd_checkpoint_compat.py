"""Checkpoints written by lightning_skd 0.1.0 (``fixtures/self_kd_v0``) resume to the same end as the original run."""

import pytest
import torch

from tests.callbacks.checkpoint_fixtures import CASES, FIXTURES, RESUME_EPOCH, fit


@pytest.mark.parametrize("case", sorted(CASES))
def test_self_kd_v0_checkpoint_resumes_with_the_same_alpha_and_teachers(case, tmp_path, one_thread):
    expected = torch.load(FIXTURES / f"{case}.expected.pt", weights_only=True)
    model, callback = fit(case, tmp_path, ckpt_path=FIXTURES / f"{case}.ckpt")

    assert callback.alpha == pytest.approx(expected["alpha"])
    for epoch, soft_targets in expected["soft_targets"].items():
        assert epoch > RESUME_EPOCH
        assert model.soft_targets[epoch].keys() == soft_targets.keys()
        for index, soft in soft_targets.items():  # the teacher of every sample (or token) is the original one
            torch.testing.assert_close(model.soft_targets[epoch][index], soft, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.table.detach(), expected["table"], rtol=1e-5, atol=1e-6)
