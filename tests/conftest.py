"""Fixtures shared by several test modules."""

import os
import random

import numpy as np
import pytest
import torch

from tests.helpers.trainer import quiet_trainer

# One torch thread per test process, and per process a test starts (the CLI, DDP ranks, compare's jobs, notebook
# kernels inherit the variable). `make test` runs two pytest workers on CI's two cores; OpenMP threads that outnumber
# the cores spin against each other (the detector fine-tune test took 170 s instead of 14 s with two threads each).
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_global_generators():
    """Start every test from the same global RNG state (torch CPU, NumPy, ``random``), whatever ran before it.

    Tests whose assertions depend on random values seed their own generator at their top as well; this covers the
    incidental draws (weight initialisation in tests that only check shapes or errors, a DataLoader's base seed), so
    no test's outcome depends on which tests ran before it. Lightning's ``seed_everything`` also leaves its seed in
    the environment (``PL_GLOBAL_SEED``, ``PL_SEED_WORKERS``), where a later unseeded LightningCLI would pick it up
    and DataLoader workers would be seeded by it: removed as well.
    """
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        os.environ.pop(name, None)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is fastest and immune to other processes holding the CPU cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trainer_factory():
    """:func:`tests.helpers.trainer.quiet_trainer`: ``trainer_factory(callbacks, max_epochs=3, **kwargs)``, a CPU
    Trainer without logger, checkpointing, progress bar or model summary unless ``kwargs`` overrides them."""
    return quiet_trainer
