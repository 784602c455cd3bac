"""Time the calibration metrics on 1,000,000 samples x 100 classes against a per-sample Python loop.

Run: ``.venv/bin/python benchmarks/bench_metrics.py [--samples N] [--classes C] [--loop-samples M]``.

Measured side by side in one run, on the same seeded data (about 75% top-1 accuracy):

* ``CalibrationMetrics`` (ECE, AURC, E-AURC, NLL, top-1/top-5 error, input validation on), one ``update`` with all
  samples then ``compute``; the same in batches of 10,000; and with ``from_logits=True``;
* the six functional calls one after another (each validates and reduces its input again);
* a straightforward per-sample Python loop implementing the same definitions (max/arg-max, bin, log, top-k by
  sorting the row, AURC by sorting the samples). The loop runs on the first ``--loop-samples`` samples only and its
  time is extrapolated linearly to all samples (the AURC sort is ``O(n log n)``, so that slightly flatters the loop).

Every timing is the best of ``--repeats`` runs, on all ``torch.get_num_threads()`` CPU threads.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from lightning_skd.functional import aurc, eaurc, expected_calibration_error, negative_log_likelihood, top_k_error
from lightning_skd.metrics import CalibrationMetrics


def make_data(n: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded logits with roughly 75% top-1 accuracy, and their targets."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (n,), generator=gen)
    logits = torch.randn(n, c, generator=gen) * 1.5
    logits[torch.arange(n), target] += 4.0
    return logits, target


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def collection_once(probs: torch.Tensor, target: torch.Tensor, num_classes: int, **kwargs) -> dict[str, float]:
    metrics = CalibrationMetrics(num_classes, **kwargs)
    metrics.update(probs, target)
    return {k: v.item() for k, v in metrics.compute().items()}


def collection_batched(probs: torch.Tensor, target: torch.Tensor, num_classes: int, batch: int) -> dict[str, float]:
    metrics = CalibrationMetrics(num_classes)
    for p, t in zip(probs.split(batch), target.split(batch), strict=True):
        metrics.update(p, t)
    return {k: v.item() for k, v in metrics.compute().items()}


def functional_all(probs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    return {
        "ece": expected_calibration_error(probs, target).item(),
        "aurc": aurc(probs, target).item(),
        "eaurc": eaurc(probs, target).item(),
        "nll": negative_log_likelihood(probs, target).item(),
        "top1_err": top_k_error(probs, target, k=1).item(),
        "top5_err": top_k_error(probs, target, k=5).item(),
    }


def python_loop(probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    """The same definitions, one sample at a time in plain Python (tensor to list conversion included)."""
    rows, targets = probs.tolist(), target.tolist()
    n = len(rows)
    bin_count, bin_conf, bin_correct = [0] * n_bins, [0.0] * n_bins, [0] * n_bins
    nll_sum, top1_miss, top5_miss = 0.0, 0, 0
    confidence_correct = []
    for row, t in zip(rows, targets, strict=True):
        best = 0
        for c in range(1, len(row)):
            if row[c] > row[best]:
                best = c
        conf, correct = row[best], best == t
        b = min(max(math.ceil(conf * n_bins) - 1, 0), n_bins - 1)
        bin_count[b] += 1
        bin_conf[b] += conf
        bin_correct[b] += correct
        nll_sum -= math.log(max(row[t], 1.1754943508222875e-38))
        ranking = sorted(range(len(row)), key=lambda k, row=row: (-row[k], k))
        position = ranking.index(t)
        top1_miss += position >= 1
        top5_miss += position >= 5
        confidence_correct.append((conf, correct))
    ece = sum(abs(bin_correct[b] - bin_conf[b]) / n for b in range(n_bins) if bin_count[b])
    ordered = sorted(confidence_correct, key=lambda pair: -pair[0])
    errors, risk_sum = 0, 0.0
    for i, (_, correct) in enumerate(ordered, start=1):
        errors += not correct
        risk_sum += errors / i
    aurc_value = risk_sum / n
    oracle = sum(j / (n - errors + j) for j in range(1, errors + 1)) / n
    return {
        "ece": ece,
        "aurc": aurc_value,
        "eaurc": aurc_value - oracle,
        "nll": nll_sum / n,
        "top1_err": top1_miss / n,
        "top5_err": top5_miss / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--loop-samples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, c, m = args.samples, args.classes, min(args.loop_samples, args.samples)

    logits, target = make_data(n, c)
    probs = logits.softmax(dim=1)
    print(f"{n:,} samples x {c} classes, float32, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")

    rows = []
    t, ours = best_of(lambda: collection_once(probs, target, c), args.repeats)
    rows.append(("CalibrationMetrics, 1 update + compute", t))
    t, _ = best_of(lambda: collection_batched(probs, target, c, 10_000), args.repeats)
    rows.append(("CalibrationMetrics, 100 updates of 10k + compute", t))
    t, from_logits = best_of(lambda: collection_once(logits, target, c, from_logits=True), args.repeats)
    rows.append(("CalibrationMetrics(from_logits=True), 1 update + compute", t))
    t, functional = best_of(lambda: functional_all(probs, target), args.repeats)
    rows.append(("6 functional calls (each validates again)", t))
    loop_time, loop_sub = best_of(lambda: python_loop(probs[:m], target[:m]), 1)
    loop_full = loop_time * n / m
    rows.append((f"Python loop, measured on {m:,} samples", loop_time))
    rows.append((f"Python loop, x{n / m:g} linear extrapolation", loop_full))

    width = max(len(name) for name, _ in rows)
    print(f"\n{'what':<{width}}  {'seconds':>9}  {'loop / this':>11}")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:9.3f}  {loop_full / seconds:11.1f}")

    # Sanity: the loop and the vectorised code agree on the loop's subsample; all variants agree on all data.
    sub = collection_once(probs[:m], target[:m], c)
    worst_loop = max(abs(sub[k] - loop_sub[k]) for k in loop_sub)
    worst_functional = max(abs(ours[k] - functional[k]) for k in functional)
    worst_logits = max(abs(ours[k] - from_logits[k]) for k in ours)
    print(f"\nvalues on all data: {', '.join(f'{k}={v:.5f}' for k, v in ours.items())}")
    print(
        f"max |difference|: loop vs vectorised (on {m:,}) {worst_loop:.1e}, "
        f"functional vs collection {worst_functional:.1e}, from_logits vs probs {worst_logits:.1e}"
    )
    print(
        f"target: < 1 s for the collection on {n:,} x {c}: {'met' if rows[0][1] < 1 else 'MISSED'} ({rows[0][1]:.3f} s)"
    )


if __name__ == "__main__":
    main()
