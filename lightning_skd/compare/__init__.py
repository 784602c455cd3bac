"""``lightning-skd compare``: run configs × seeds, resume unfinished sweeps, tabulate the methods against a baseline.

A sweep file names the methods (one ``lightning-skd`` config each), the seeds, the baseline and, optionally, the
metrics of the table (any task: the metrics are what the model logs at ``trainer.test``)::

    # configs/sweeps/digits.yaml
    output_dir: outputs/compare/digits        # relative to the working directory
    seeds: [0, 1, 2, 3, 4]
    baseline: Baseline                        # the method the others are compared with, seed by seed
    args: []                                  # extra lightning-skd arguments for every run
    test_ckpt_path: null                      # null: test the weights fit ended with; best / last: that checkpoint
    metrics:                                  # optional; default: the classification set (CLASSIFICATION_METRICS)
      - {key: test/top1_err, label: Top-1 err (%), scale: 100, lower_is_better: true}
      - {key: test/nll, label: NLL}             # label defaults to the key, scale to 1, lower_is_better to true
    methods:
      - {name: Baseline, config: ../digits/baseline.yaml}   # config paths are relative to the sweep file
      - {name: + Self-KD, config: ../digits/selfkd.yaml}
      # optional: also a row "+ Self-KD + TS", the same runs' metrics after temperature scaling
      # - {name: + Self-KD, config: ../digits/selfkd.yaml, temperature_scaling: true}

    lightning-skd compare configs/sweeps/digits.yaml [--seeds 0 1] [--output-dir DIR] [--max-epochs N]
        [--threads T] [--jobs N] [ARGS ...]

Each run (method, seed) is ``fit`` then ``test`` of its config with ``--seed_everything seed`` (plus ``ARGS``, e.g.
``--trainer.limit_train_batches=0.5``): with ``--jobs 1`` (default) in this process, one after the other; with
``--jobs N`` as N worker processes at a time (:mod:`lightning_skd.compare.jobs`: ``--threads`` torch threads each,
one GPU each where there are GPUs; a failed run is reported with its ``run.log`` once the others have ended, and the
command exits with status 1). Each run's console output, model summary and warnings go to
``<output_dir>/runs/<method>/seed<k>/run.log``, and one progress display covers the whole sweep. A
finished run writes ``result.json`` (every logged test metric; atomically, last); a rerun skips every run whose
``result.json`` exists with the same arguments and all the sweep's metrics, so an interrupted sweep resumes where it
stopped and deleting one ``result.json`` redoes that run only.

Outputs in ``output_dir``: ``results.md`` and ``results.csv`` (mean ± std over seeds of every metric, and each
method's paired difference to the baseline: mean over seeds of ``method - baseline`` with a 95 % Student-t
interval), ``runs.csv`` (every run's numbers) and, when the models predict class probabilities (``predict_step``
returns ``probs`` and ``target``, as :class:`~lightning_skd.models.ImageClassifier`), ``figures.png``
(reliability diagram and risk-coverage curve of every method's first seed, side by side).

``temperature_scaling: true`` on a method tests its runs with a :class:`~lightning_skd.callbacks.TemperatureScaling`
(added unless its config has one: ``T`` fitted on the validation split after ``fit``, with the weights tested) and
adds the row ``"<name> + TS"`` right after the method's: the same runs' ``test_ts/`` metrics, summarised and paired
with the baseline seed by seed like every row (``baseline`` may name a ``+ TS`` row too). Every metric of the sweep
must then be a ``test/`` metric with a ``test_ts/`` counterpart (the classification metrics and a translator's token
metrics; not BLEU).
"""

from lightning_skd.compare.command import compare, main, parse_args, run_sweep, tabulate
from lightning_skd.compare.figures import write_figures
from lightning_skd.compare.jobs import RunFailure, SweepFailed
from lightning_skd.compare.runner import RunSpec, run_once
from lightning_skd.compare.sweep import CLASSIFICATION_METRICS, Method, Metric, Sweep
from lightning_skd.compare.tables import (
    Summary,
    machine_description,
    markdown_table,
    paired_difference,
    rich_table,
    summarize,
    with_temperature_scaling_rows,
    write_csv,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "Method",
    "Metric",
    "RunFailure",
    "RunSpec",
    "Summary",
    "Sweep",
    "SweepFailed",
    "compare",
    "machine_description",
    "main",
    "markdown_table",
    "paired_difference",
    "parse_args",
    "rich_table",
    "run_once",
    "run_sweep",
    "summarize",
    "tabulate",
    "with_temperature_scaling_rows",
    "write_csv",
    "write_figures",
]
