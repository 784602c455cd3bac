"""The main job (``make demo``): baseline, label smoothing and Self-KD on the bundled digits data, through the runner.

It is ``lightning-skd compare configs/sweeps/digits.yaml --threads 1`` (see :mod:`lightning_skd.compare`): every
method × seed is trained and tested, the table of mean ± std and paired differences to the baseline (95 % t-interval
over seeds) is printed and written to ``outputs/demo/results.md`` / ``.csv`` with the figures in
``outputs/demo/figures.png``. The setting (``configs/digits/*.yaml``) is the regime Self-KD is meant for; the demo
then says in words whether Self-KD's NLL and ECE differ from the baseline by more than the seed-to-seed noise.

    python -m lightning_skd.tools.demo [--seeds 0 1 2 3 4] [--output-dir outputs/demo] [other compare options]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from lightning_skd.compare import Summary, compare, parse_args

SWEEP = Path(__file__).resolve().parents[2] / "configs" / "sweeps" / "digits.yaml"
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
    args = list(argv or [])
    if "--threads" not in args:
        args += ["--threads", "1"]  # the small CNN runs fastest on one thread, also on a busy machine
    console = Console(width=max(Console().width, 150))
    table = compare(parse_args([str(SWEEP), *args]), console)
    for line in verdict(table):
        console.print(line)
    return table


if __name__ == "__main__":
    main()
