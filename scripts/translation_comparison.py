"""Run the ``configs/message_catalogs/`` translation rows over seeds on a CPU and tabulate their test metrics.

Each (config, seed) is ``lightning-skd fit`` then ``lightning-skd test`` of the best checkpoint (by ``val/bleu``),
run as subprocesses, ``--jobs`` at a time, each with ``--threads`` torch threads; finished runs (``test.json``
present) are skipped, so an interrupted comparison resumes. The training split is a seeded random subset of
``--pairs`` pairs of the full corpus (valid and test are used whole), written once to ``--subset-dir``.

Usage::

    python scripts/prepare_message_catalog_corpus.py --out data/message_catalogs_en_de --cache data/.debs
    python scripts/translation_comparison.py --corpus data/message_catalogs_en_de --pairs 20000 --seeds 0 1

Writes ``<output>/results.md`` (mean ± std over seeds, and every seed) and ``<output>/runs.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

METHODS = {
    "Baseline": "en_de_baseline.yaml",
    "+ Label smoothing 0.1": "en_de_label_smoothing.yaml",
    "+ Self-KD (token cache)": "en_de_selfkd_cache.yaml",
    "+ SKD": "en_de_skd.yaml",
}
# (metric key, column title, scale)
COLUMNS = [
    ("test/bleu", "BLEU greedy", 1.0),
    ("test/bleu_beam5", "BLEU beam 5", 1.0),
    ("test/nll", "token NLL", 1.0),
    ("test/ece", "token ECE (%)", 100.0),
    ("test/top1_err", "token top-1 err (%)", 100.0),
    ("test/aurc", "AURC (x10^3)", 1000.0),
]


def make_subset(corpus: Path, subset: Path, pairs: int, seed: int = 0) -> None:
    """A seeded random ``pairs``-pair subset of ``corpus``'s training split, valid and test copied whole."""
    if (subset / "train.de").exists():
        return
    subset.mkdir(parents=True, exist_ok=True)
    english = (corpus / "train.en").read_text(encoding="utf-8").splitlines()
    german = (corpus / "train.de").read_text(encoding="utf-8").splitlines()
    keep = sorted(random.Random(seed).sample(range(len(english)), pairs))
    for name, lines in (("train.en", english), ("train.de", german)):
        (subset / name).write_text("".join(lines[i] + "\n" for i in keep), encoding="utf-8")
    for name in ("valid.en", "valid.de", "test.en", "test.de"):
        shutil.copy(corpus / name, subset / name)


def run(config: Path, seed: int, run_dir: Path, data_dir: Path, threads: int) -> dict[str, float]:
    """Fit then test one (config, seed); returns the test metrics (cached in ``run_dir/test.json``)."""
    result = run_dir / "test.json"
    if result.exists():
        return json.loads(result.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cli = [sys.executable, "-c", "from lightning_skd.cli import main; main()"]
    common = [
        "--config", str(config), "--seed_everything", str(seed), "--data.data_dir", str(data_dir),
        "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar=false",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={run_dir}",
    ]  # fmt: skip
    start = time.time()
    with open(run_dir / "run.log", "w") as log:
        subprocess.run([*cli, "fit", *common], check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
        best = next(run_dir.rglob("checkpoints/best*.ckpt"))
        subprocess.run(
            [*cli, "test", *common, "--ckpt_path", str(best)], check=True, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    metrics = {}
    for path in sorted(run_dir.rglob("metrics.csv")):
        with open(path) as handle:
            for row in csv.DictReader(handle):
                metrics.update({k: float(v) for k, v in row.items() if k.startswith("test/") and v})
    metrics["wall_s"] = time.time() - start
    result.write_text(json.dumps(metrics, indent=1))
    return metrics


def table(results: dict[str, list[tuple[int, dict[str, float]]]], title: str) -> str:
    """Markdown: mean ± std over seeds per method, then every run."""
    lines = [title, "", "| method | " + " | ".join(t for _, t, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for method, runs in results.items():
        cells = []
        for key, _, scale in COLUMNS:
            values = [m[key] * scale for _, m in runs]
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed:", "", "| method | seed | " + " | ".join(t for _, t, _ in COLUMNS) + " | wall (s) |"]
    lines.append("|---" * (len(COLUMNS) + 3) + "|")
    for method, runs in results.items():
        for seed, m in runs:
            cells = " | ".join(f"{m[key] * scale:.2f}" for key, _, scale in COLUMNS)
            lines.append(f"| {method} | {seed} | {cells} | {m['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse the arguments, make the subset, run what is missing, write the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("data/message_catalogs_en_de"))
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--subset-dir", type=Path, default=None)
    parser.add_argument("--configs", type=Path, default=Path("configs/message_catalogs"))
    parser.add_argument("--output", type=Path, default=Path("outputs/message_catalogs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    subset = args.subset_dir or args.corpus.with_name(f"{args.corpus.name}_{args.pairs // 1000}k")
    make_subset(args.corpus, subset, args.pairs)
    jobs = [(name, seed) for seed in args.seeds for name in METHODS]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            job: pool.submit(
                run,
                args.configs / METHODS[job[0]],
                job[1],
                args.output / Path(METHODS[job[0]]).stem / f"seed{job[1]}",
                subset,
                args.threads,
            )
            for job in jobs
        }
        results = {name: [(seed, futures[(name, seed)].result()) for seed in args.seeds] for name in METHODS}
    title = (
        f"Test split of {args.corpus} (3,037 pairs), models trained on {args.pairs:,} random training pairs "
        f"(seed 0 subset), seeds {args.seeds}; mean ± std over seeds."
    )
    text = table(results, title)
    (args.output / "results.md").write_text(text)
    with open(args.output / "runs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "seed", *[k for k, _, _ in COLUMNS], "wall_s"])
        for name, runs in results.items():
            for seed, m in runs:
                writer.writerow([name, seed, *[m[k] for k, _, _ in COLUMNS], m["wall_s"]])
    print(text)


if __name__ == "__main__":
    main()
