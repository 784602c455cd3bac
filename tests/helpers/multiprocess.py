"""Runs the ``lightning-skd`` command as a user would, also under DDP, with a hard timeout that shows a hang.

Every process the command starts (Lightning re-launches the command for ranks 1..N-1) imports a ``sitecustomize``
from a folder this module puts first on ``PYTHONPATH``. It registers :mod:`faulthandler` on ``SIGUSR1`` and arms
``faulthandler.dump_traceback_later`` as a last resort. When the command outlives its timeout, the whole process
group gets ``SIGUSR1`` (every process prints the Python stack of every thread to the shared stderr), then
``SIGKILL``, and the test fails with those stacks, so a deadlock shows where each rank waits instead of stalling CI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
CLI = Path(sys.executable).with_name("lightning-skd")
DDP_ARGS = ("--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp")
QUIET_ARGS = ("--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")

_SITECUSTOMIZE = """\
import faulthandler, os, signal, sys
faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
faulthandler.dump_traceback_later(float(os.environ["LIGHTNING_SKD_TEST_HANG_S"]), exit=True, file=sys.stderr)
"""


@dataclass
class CommandResult:
    """What a finished command printed."""

    args: list[str]
    stdout: str
    stderr: str


def run_command(args: list[str], cwd: Path, timeout: float = 240.0, env: dict[str, str] | None = None) -> CommandResult:
    """Run ``args`` in ``cwd``; fail the test with every process's stack if it hangs, with its output if it fails.

    Args:
        args: The command line, e.g. ``[str(CLI), "fit", "--config", ...]``.
        cwd: Working directory (relative paths of configs, e.g. ``outputs/...``, land here).
        timeout: Seconds before the process group's stacks are dumped and it is killed.
        env: Extra environment variables.

    """
    hooks = cwd / ".hang_hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    environment = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")}
    environment.update(
        PYTHONPATH=os.pathsep.join([str(hooks), str(REPO), environment.get("PYTHONPATH", "")]),
        LIGHTNING_SKD_TEST_HANG_S=str(timeout + 30),  # the last resort if this process is gone
        MASTER_ADDR="127.0.0.1",
        PYTHONWARNINGS="ignore::DeprecationWarning",
        **(env or {}),
    )
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGUSR1)
        time.sleep(3)
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"HANG: {' '.join(args)} ran past {timeout:.0f} s; the stack of every process follows.\n"
            f"stdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-20000:]}",
            pytrace=False,
        )
    if process.returncode != 0:
        pytest.fail(
            f"exit {process.returncode}: {' '.join(args)}\nstdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-8000:]}",
            pytrace=False,
        )
    return CommandResult(args, stdout, stderr)


def run_cli(subcommand: str, *args: str, cwd: Path, ddp: bool = False, timeout: float = 240.0) -> CommandResult:
    """``lightning-skd <subcommand> <args>`` in ``cwd``; with ``ddp=True`` on 2 CPU processes (gloo)."""
    command = [str(CLI), subcommand, *args, *QUIET_ARGS, *(DDP_ARGS if ddp else ())]
    return run_command(command, cwd, timeout=timeout)
