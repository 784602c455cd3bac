import pytest

from lightning_skd.callbacks._checkpoint_format import FORMAT, migrate_self_kd_state


def test_migrate_self_kd_state_keeps_the_current_format_and_refuses_unknown_ones():
    current = {"format": FORMAT, "alpha": 0.1, "finished_epoch": 0, "teacher": {"kind": "cache"}}
    assert migrate_self_kd_state(current) is current
    with pytest.raises(ValueError, match="format 7, which this version of lightning_skd cannot read"):
        migrate_self_kd_state({"format": 7})
    with pytest.raises(ValueError, match="format 0"):
        migrate_self_kd_state({"alpha": 0.1})


def test_migrate_self_kd_state_maps_a_version_0_token_cache_to_layout_and_table():
    old_rows = {"num_samples": 5, "num_classes": 3, "topk": 2, "dtype": "torch.float16", "values": 1, "stamps": 2}
    old = {
        "mode": "cache",
        "alpha": 0.2,
        "num_classes": 3,
        "cache": {"layout": "token", "lengths": [2, 3], "rows": old_rows},
    }
    teacher = migrate_self_kd_state({**old, "teacher": None, "has_teacher": False, "last_refresh_step": 0})["teacher"]
    assert teacher["layout"] == {"layout": "token", "lengths": [2, 3]}
    assert teacher["table"]["num_rows"] == 5 and "num_samples" not in teacher["table"]
    assert teacher["table"]["storage"] == "memory"
