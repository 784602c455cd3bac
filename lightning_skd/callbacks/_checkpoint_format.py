"""The checkpoint format of :class:`~lightning_skd.SelfKDCallback`, and the migration of earlier formats."""

from __future__ import annotations

from typing import Any

FORMAT = 1


def migrate_self_kd_state(state: dict[str, Any]) -> dict[str, Any]:
    """A SelfKDCallback checkpoint state in the current format (:data:`FORMAT`), from any earlier one.

    Format 1: ``{"format": 1, "alpha", "finished_epoch", "teacher": <the teacher's own state>}``. Format 0
    (lightning_skd 0.1.0, no ``"format"`` key) kept the snapshot weights or the cache table, in one of three layouts,
    beside ``"mode"``; its cache tables used ``num_samples`` for what is now ``num_rows``.

    Example:
        >>> old = {"mode": "snapshot", "alpha": 0.4, "num_classes": 3, "cache": None, "teacher": None,
        ...        "has_teacher": False, "last_refresh_step": 0, "finished_epoch": 1}
        >>> migrate_self_kd_state(old)["teacher"]
        {'kind': 'snapshot', 'weights': None, 'has_weights': False, 'last_refresh_step': 0}

    """
    version = state.get("format", 0)
    if version == FORMAT:
        return state
    if version != 0 or "mode" not in state:
        raise ValueError(
            f"This SelfKDCallback checkpoint has format {version!r}, which this version of lightning_skd cannot read "
            f"(it reads formats 0 to {FORMAT}); upgrade lightning_skd."
        )
    teacher = _snapshot_v0(state) if state["mode"] == "snapshot" else _cache_v0(state["cache"])
    return {
        "format": FORMAT,
        "alpha": state["alpha"],
        "finished_epoch": state.get("finished_epoch", -1),
        "teacher": teacher,
    }


def _snapshot_v0(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "snapshot",
        "weights": state["teacher"],
        "has_weights": state["has_teacher"],
        "last_refresh_step": state["last_refresh_step"],
    }


def _cache_v0(cache: dict[str, Any] | None) -> dict[str, Any]:
    if cache is None:
        return {"kind": "cache", "layout": None, "table": None}
    tokens = cache.get("layout") == "token"
    rows = cache["rows"] if tokens else cache
    table = {key: value for key, value in rows.items() if key != "num_samples"}
    table["num_rows"] = rows["num_samples"]
    table["storage"] = "memmap" if "committed_epoch" in rows else "memory"
    layout = (
        {"layout": "token", "lengths": cache["lengths"]}
        if tokens
        else {"layout": "sample", "num_samples": rows["num_samples"]}
    )
    return {"kind": "cache", "layout": layout, "table": table}
