"""Time ``lightning-skd --help`` against what it cost before it was answered without torch and Lightning.

Run: ``.venv/bin/python benchmarks/bench_cli_help.py [--repeats N]``.

Each is a fresh interpreter (wall time, median of ``--repeats`` runs, one warm-up run each first):

* ``python``: ``python -c pass``, the interpreter's own start-up;
* ``--help``: ``python -m lightning_skd --help``, what the ``lightning-skd`` console script runs;
* ``LightningCLI --help``: the top-level help through :class:`lightning_skd.cli.SelfKDCLI`, as ``lightning-skd
  --help`` was answered before (imports torch and Lightning, builds the parsers of every subcommand).

The ratio of the last two is what the lazy imports buy; the absolute times depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python": ["-c", "pass"],
    "--help": ["-m", "lightning_skd", "--help"],
    "LightningCLI --help": ["-c", "from lightning_skd.cli import SelfKDCLI; SelfKDCLI(args=['--help'])"],
}


def wall_time(args: list[str]) -> float:
    """Seconds one run of ``python args`` takes, start to exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    """Print the median time of each case and the ratio LightningCLI / lazy ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    medians = {}
    for name, args in CASES.items():
        wall_time(args)  # warm-up: file system caches
        medians[name] = statistics.median(wall_time(args) for _ in range(options.repeats))
        print(f"{name:<22} {medians[name]:7.2f} s (median of {options.repeats})")
    ratio = medians["LightningCLI --help"] / medians["--help"]
    print(f"lazy --help is {ratio:.0f}x faster than through LightningCLI")


if __name__ == "__main__":
    main()
