"""Helpers shared by several test modules (and by the scripts the multi-process tests launch); fixtures live in
tests/conftest.py.

- ``callbacks``: small modules and loaders whose outputs the Self-KD callback tests control exactly.
- ``ddp``: CLI runs with a CSV logger, their metrics and single-process references (the end-to-end DDP suite).
- ``detection``: a generated VOC tree and a small detector configuration.
- ``multiprocess``: ``run_command``/``run_cli`` with a hard timeout that prints every process's stack on a hang.
- ``reference_metrics``: plain reference implementations of the metrics.
- ``seq2seq``: a toy language pair and tiny seq2seq models.
- ``trainer``: ``quiet_trainer``, the one Trainer factory of the tests (also the ``trainer_factory`` fixture).
"""
