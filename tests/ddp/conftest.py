"""Every test under tests/ddp/ starts more than one process (DDP, FSDP, or the hang guard of
tests/helpers/multiprocess.py): all of them carry the ``ddp`` marker, so ``pytest -m ddp`` runs only these and
``pytest -m "not ddp"`` the rest. ``make test`` runs both."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest hook sees the whole session's items: mark only this folder's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.ddp)
