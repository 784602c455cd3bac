"""One run of a sweep in a process of its own (``lightning-skd compare --jobs N`` starts these).

``python -m lightning_skd.compare.worker SPEC_JSON --progress-fd FD --threads T`` runs
:func:`~lightning_skd.compare.runner.run_once` for the :class:`~lightning_skd.compare.runner.RunSpec` in
``SPEC_JSON`` with ``T`` torch threads, and writes one JSON line ``[finished epochs, max_epochs]`` to the file
descriptor ``FD`` at the start of training and after every training epoch. Exit code 0 once ``result.json`` is
written; an error's traceback goes to stderr (the run's ``run.log``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import torch

from lightning_skd.compare.runner import RunSpec, run_once


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m lightning_skd.compare.worker", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="the run, as RunSpec.to_json() writes it")
    parser.add_argument("--progress-fd", type=int, required=True, help="inherited file descriptor for epoch reports")
    parser.add_argument("--threads", type=int, required=True, help="torch CPU threads")
    options = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # the run's arguments are the spec's: LightningCLI would warn about these
    torch.set_num_threads(options.threads)
    with os.fdopen(options.progress_fd, "w", buffering=1) as channel:

        def report(completed: int, total: int | None) -> None:
            channel.write(json.dumps([completed, total]) + "\n")

        run_once(RunSpec.from_json(options.spec), report)


if __name__ == "__main__":
    main()
