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
