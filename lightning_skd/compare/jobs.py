"""``lightning-skd compare --jobs N``: a sweep's runs in N worker processes at a time, with one progress display.

Each run is ``python -m lightning_skd.compare.worker`` (the same Python and package as this process) with its own
torch CPU threads and, where there are GPUs, one GPU (``CUDA_VISIBLE_DEVICES``, round robin over the visible ones by
job slot). Its console output goes to its ``run.log``; its epochs come back through a pipe. A run that fails does
not stop the others: the failures are collected and raised together (:class:`SweepFailed`) once all have ended.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress

from lightning_skd.compare.runner import EpochReport, RunSpec, epoch_reporter, finished_record, progress_display

#: The folder that holds the ``lightning_skd`` package this process runs: first on the workers' ``PYTHONPATH``.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunFailure:
    """A run whose worker failed (non-zero exit, or no matching ``result.json``)."""

    spec: RunSpec
    returncode: int

    def describe(self) -> str:
        """One line: the run, the exit code and where its log is."""
        return f"{self.spec.method}, seed {self.spec.seed}: exit code {self.returncode}; log: {self.spec.log_path}"


class SweepFailed(RuntimeError):
    """Some runs of a sweep failed; the others finished (their ``result.json`` are kept for the rerun)."""

    def __init__(self, failures: Sequence[RunFailure]) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  {failure.describe()}" for failure in self.failures)
        super().__init__(f"{len(self.failures)} run(s) failed:\n{lines}")


def visible_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(jobs: int) -> int:
    """Torch threads per run when ``--threads`` is not given: the visible CPUs shared out over ``jobs`` runs."""
    return max(1, visible_cpus() // jobs)


def visible_gpus() -> list[str]:
    """The GPU ids jobs are spread over: this process's ``CUDA_VISIBLE_DEVICES`` (or all CUDA devices), else none."""
    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(index) for index in range(count)]
    return [device.strip() for device in visible.split(",") if device.strip()][:count]


def job_environment(slot: int, threads: int, gpus: Sequence[str], base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the worker in job slot ``slot``: its CPU threads, its GPU (if any), this package first.

    Example:
        >>> env = job_environment(3, threads=2, gpus=["0", "1"], base={})
        >>> env["CUDA_VISIBLE_DEVICES"], env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]
        ('1', '2', '2')

    """
    env = dict(os.environ if base is None else base)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def run_in_processes(
    todo: Sequence[RunSpec], jobs: int, threads: int, console: Console
) -> dict[tuple[str, int], dict[str, Any]]:
    """Run ``todo`` as worker processes, ``jobs`` at a time; return the records by (method, seed).

    Raises:
        SweepFailed: After every run has ended, if any failed.

    """
    gpus = visible_gpus()
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()
    for slot in range(jobs):
        slots.put(slot)
    records, failures = {}, []
    where = f"{len(gpus)} GPU(s)" if gpus else "CPU"
    with progress_display(console) as progress:
        overall = progress.add_task(f"runs ({jobs} at a time, {threads} thread(s) each, {where})", total=len(todo))
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="compare-job")
        try:
            futures: dict[Future, RunSpec] = {
                pool.submit(_run_job, spec, slots, threads, gpus, progress): spec for spec in todo
            }
            for future in as_completed(futures):
                outcome = future.result()
                if isinstance(outcome, RunFailure):
                    failures.append(outcome)
                    message = f"compare: run failed: {outcome.describe()}"
                    progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
                else:
                    records[(outcome["method"], outcome["seed"])] = outcome
                progress.advance(overall)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C: start no new run, let the running ones end
    if failures:
        raise SweepFailed(failures)
    return records


def _run_job(
    spec: RunSpec, slots: queue.SimpleQueue[int], threads: int, gpus: Sequence[str], progress: Progress
) -> dict[str, Any] | RunFailure:
    slot = slots.get()
    label = f"{spec.method}, seed {spec.seed}:"
    task = progress.add_task(label, total=None)
    try:
        returncode = _launch(spec, job_environment(slot, threads, gpus), epoch_reporter(progress, task, label))
    finally:
        progress.remove_task(task)
        slots.put(slot)
    record = finished_record(spec) if returncode == 0 else None
    return record if record is not None else RunFailure(spec, returncode)


def _launch(spec: RunSpec, env: dict[str, str], report: EpochReport) -> int:
    """Run one worker to its end, forwarding its epoch reports; return its exit code."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd) as reports:
        try:
            process = _start_worker(spec, env, write_fd)
        finally:
            os.close(write_fd)  # the worker holds the only write end now: its exit ends the loop below
        for line in reports:
            completed, total = json.loads(line)
            report(completed, total)
    return process.wait()


def _start_worker(spec: RunSpec, env: dict[str, str], progress_fd: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "lightning_skd.compare.worker", spec.to_json()]
    command += ["--progress-fd", str(progress_fd), "--threads", env["OMP_NUM_THREADS"]]
    with open(spec.log_path, "a") as log:  # the worker's console output and, if it fails, its traceback
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(progress_fd,)
        )
