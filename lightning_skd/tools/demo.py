"""The main job (``make demo``): baseline, label smoothing and Self-KD on the bundled digits data, through the runner.

It is ``lightning-skd compare configs/sweeps/digits.yaml --threads 1`` (see :mod:`lightning_skd.compare`): every
method × seed is trained and tested, the table of mean ± std and paired differences to the baseline (95 % t-interval
over seeds) is printed and written to ``outputs/demo/results.md`` / ``.csv`` with the figures in
``outputs/demo/figures.png``. The setting (``configs/digits/*.yaml``) is the regime Self-KD is meant for; the demo
then says in words whether Self-KD's NLL and ECE differ from the baseline by more than the seed-to-seed noise.

    lightning-skd demo [--seeds 0 1 2 3 4] [--output-dir outputs/demo] [other compare options]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from lightning_skd.compare import Summary, compare, parse_args
from lightning_skd.tools.configs import shipped_config

SWEEP = shipped_config("sweeps/digits.yaml")
SELF_KD = "+ Self-KD"


def verdict(table: dict[str, dict[str, Summary]], method: str = SELF_KD) -> list[str]:
    """One sentence per calibration metric saying whether ``method``'s paired difference is outside seed noise."""
    lines = []
    for key, name, scale, unit in (("test/nll", "NLL", 1.0, ""), ("test/ece", "ECE", 100.0, " %")):
        s = table[method][key]
        interval = (
            f"{s.diff * scale:+.3f}{unit} (95 % interval [{s.diff_low * scale:+.3f}, {s.diff_high * scale:+.3f}])"
        )
        if s.diff_high < 0:
            lines.append(f"{method} lowers {name}: {interval}; the interval excludes 0, beyond seed-to-seed noise.")
        elif s.diff_low > 0:
            lines.append(f"{method} RAISES {name}: {interval}; the interval excludes 0.")
        else:
            lines.append(f"{method} changes {name} by {interval}: within seed-to-seed noise, no effect shown here.")
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Summary]]:
    """Run the demo sweep and print the table and the verdict; returns the summaries."""
    args = sys.argv[1:] if argv is None else list(argv)
    argparse.ArgumentParser(
        prog="lightning-skd demo",
        description="Baseline, label smoothing and Self-KD on the bundled digits data (scikit-learn's 8x8 images), "
        "5 seeds each, trained and tested on the CPU; then the table of each method against the baseline and a "
        "sentence on whether Self-KD's NLL and ECE differ beyond seed-to-seed noise.",
        epilog="Any option of `lightning-skd compare` (--seeds, --output-dir, --max-epochs, --threads, --jobs) or "
        "trainer override is passed on; outputs go to outputs/demo in the working directory.",
    ).parse_known_args(args)  # only answers --help: every argument goes to the sweep
    if "--threads" not in args:
        args += ["--threads", "1"]  # the small CNN runs fastest on one thread, also on a busy machine
    console = Console(width=max(Console().width, 150))
    table = compare(parse_args([str(SWEEP), *args]), console)
    for line in verdict(table):
        console.print(line)
    return table


if __name__ == "__main__":
    main()
