"""The one Trainer factory of the tests (also the ``trainer_factory`` fixture of tests/conftest.py)."""

from __future__ import annotations

import pytorch_lightning as pl


def quiet_trainer(callbacks=None, max_epochs: int | None = 3, **kwargs) -> pl.Trainer:
    """A CPU :class:`~pytorch_lightning.Trainer` without logger, checkpointing, progress bar or model summary.

    Each of those (and ``accelerator``) can be overridden through ``kwargs``, e.g. ``enable_checkpointing=True`` for a
    run with its own ``ModelCheckpoint``; every other keyword goes to the Trainer as given.
    """
    options = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **kwargs,
    }
    return pl.Trainer(max_epochs=max_epochs, callbacks=callbacks, **options)
