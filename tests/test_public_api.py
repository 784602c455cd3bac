import subprocess
import sys

import pytest

import lightning_skd


def test_top_level_api_is_exactly_what_a_user_needs_in_their_own_code():
    assert sorted(lightning_skd.__all__) == [
        "AlphaSchedule",
        "CalibrationMetrics",
        "ConstantAlpha",
        "EmbeddingSKDLoss",
        "IndexedDataset",
        "LIGHTNING_NAMESPACE",
        "LightningSKDWarning",
        "LinearAlpha",
        "SKDAlphaScheduler",
        "SelfKDCallback",
        "StepAlpha",
        "self_kd_loss",
    ]
    for name in set(lightning_skd.__all__) - {"LIGHTNING_NAMESPACE"}:  # a string: tests/test_lightning.py
        assert getattr(lightning_skd, name).__module__.startswith("lightning_skd.")


def test_importing_the_package_imports_neither_torch_nor_lightning():
    heavy = "{'torch', 'pytorch_lightning', 'lightning'}"
    code = f"import sys, lightning_skd; print(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_top_level_names_and_submodules_load_on_first_use():
    assert set(lightning_skd.__all__) <= set(dir(lightning_skd))
    assert lightning_skd.models.ImageClassifier.__module__ == "lightning_skd.models.image_classifier"
    assert lightning_skd.SelfKDCallback is lightning_skd.callbacks.SelfKDCallback
    with pytest.raises(AttributeError, match="module 'lightning_skd' has no attribute 'SelfKD'"):
        lightning_skd.SelfKD  # noqa: B018
