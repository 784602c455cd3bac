"""Naive reference implementations of the calibration metrics, written from the definitions with Python loops.

Everything here works on Python floats/lists (exact rational bin edges, first-index arg-max) so that it shares no
code, and no vectorisation trick, with ``lightning_skd``. The ``pskd_*`` and ``moon_*`` functions restate the
published evaluation code of PS-KD (Kim et al. 2021, ``utils/metric.py``) and of Moon et al. 2020 (the
``calc_aurc_eaurc`` / ``coverage_risk`` / ``aurc_eaurc`` trio copied by many repositories) from their definitions.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import torch

FLOAT32_TINY = torch.finfo(torch.float32).tiny


def rows_and_targets(probs: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None):
    """Float64 lists of rows and int targets, ignored samples dropped."""
    rows = probs.double().tolist()
    targets = target.tolist()
    kept = [(row, t) for row, t in zip(rows, targets, strict=True) if ignore_index is None or t != ignore_index]
    return [row for row, _ in kept], [t for _, t in kept]


def confidence_correct(rows, targets):
    """Per sample: max probability and whether the first arg-max equals the target."""
    out = []
    for row, t in zip(rows, targets, strict=True):
        best = 0
        for c in range(1, len(row)):
            if row[c] > row[best]:
                best = c
        out.append((row[best], best == t))
    return out


def ref_bin(conf: float, n_bins: int) -> int:
    """Bin b with b/n < conf <= (b+1)/n in exact rational arithmetic; conf <= 0 in bin 0, conf >= 1 in the last."""
    exact = Fraction(conf)
    for b in range(n_bins):
        if exact <= Fraction(b + 1, n_bins):
            return b
    return n_bins - 1


def ref_ece(probs, target, n_bins=15, norm="l1", ignore_index=None) -> float:
    rows, targets = rows_and_targets(probs, target, ignore_index)
    pairs = confidence_correct(rows, targets)
    n = len(pairs)
    if n == 0:
        return math.nan
    bins = [[] for _ in range(n_bins)]
    for conf, correct in pairs:
        bins[ref_bin(conf, n_bins)].append((conf, correct))
    gaps, weights = [], []
    for members in bins:
        if not members:
            continue
        acc = sum(1.0 for _, correct in members if correct) / len(members)
        mean_conf = sum(conf for conf, _ in members) / len(members)
        gaps.append(abs(acc - mean_conf))
        weights.append(len(members) / n)
    if norm == "l1":
        return sum(w * g for w, g in zip(weights, gaps, strict=True))
    if norm == "l2":
        return math.sqrt(sum(w * g * g for w, g in zip(weights, gaps, strict=True)))
    return max(gaps)


def _ref_bin_members(probs, target, n_bins, ignore_index):
    """Equal-width bins as lists of (confidence, correct) pairs, and the number of samples."""
    rows, targets = rows_and_targets(probs, target, ignore_index)
    pairs = confidence_correct(rows, targets)
    bins = [[] for _ in range(n_bins)]
    for conf, correct in pairs:
        bins[ref_bin(conf, n_bins)].append((conf, correct))
    return bins, len(pairs)


def ref_over_under_confidence(probs, target, n_bins=15, ignore_index=None) -> tuple[float, float]:
    """(OCE, UCE): sum over bins of |B|/n * max(conf - acc, 0) and |B|/n * max(acc - conf, 0)."""
    bins, n = _ref_bin_members(probs, target, n_bins, ignore_index)
    if n == 0:
        return math.nan, math.nan
    over = under = 0.0
    for members in bins:
        if not members:
            continue
        acc = sum(1.0 for _, correct in members if correct) / len(members)
        mean_conf = sum(conf for conf, _ in members) / len(members)
        over += len(members) / n * max(mean_conf - acc, 0.0)
        under += len(members) / n * max(acc - mean_conf, 0.0)
    return over, under


def _ref_calibration_error(bins, n, norm) -> float:
    """Calibration error from bins given as lists of (confidence, correctness in [0, 1]) pairs."""
    gaps, weights = [], []
    for members in bins:
        if not members:
            continue
        acc = sum(correct for _, correct in members) / len(members)
        mean_conf = sum(conf for conf, _ in members) / len(members)
        gaps.append(abs(acc - mean_conf))
        weights.append(len(members) / n)
    if norm == "l1":
        return sum(w * g for w, g in zip(weights, gaps, strict=True))
    if norm == "l2":
        return math.sqrt(sum(w * g * g for w, g in zip(weights, gaps, strict=True)))
    return max(gaps)


def ref_equal_mass_sizes(n: int, n_bins: int) -> list[int]:
    """Bin sizes of n sorted samples: n_bins bins, the first n % n_bins ones with one sample more."""
    return [n // n_bins + (1 if b < n % n_bins else 0) for b in range(n_bins)]


def ref_adaptive_ece(probs, target, n_bins=15, norm="l1", ignore_index=None) -> float:
    """Equal-mass bins of the confidence-sorted samples; every sample of a tie group counts at the group's accuracy."""
    rows, targets = rows_and_targets(probs, target, ignore_index)
    pairs = sorted(confidence_correct(rows, targets), key=lambda pair: pair[0])
    n = len(pairs)
    if n == 0:
        return math.nan
    accuracy_of = {}
    for conf in {conf for conf, _ in pairs}:
        group = [correct for c, correct in pairs if c == conf]
        accuracy_of[conf] = sum(1.0 for correct in group if correct) / len(group)
    values = [(conf, accuracy_of[conf]) for conf, _ in pairs]
    bins, start = [], 0
    for size in ref_equal_mass_sizes(n, n_bins):
        bins.append(values[start : start + size])
        start += size
    return _ref_calibration_error(bins, n, norm)


def ref_adaptive_ece_tie_mean(probs, target, n_bins, norm="l1") -> float:
    """Adaptive ECE with each bin's accuracy averaged over every order of the samples sorting confidences ascending.

    Brute force over all permutations: only for small N.
    """
    rows, targets = rows_and_targets(probs, target)
    pairs = confidence_correct(rows, targets)
    n = len(pairs)
    sizes = ref_equal_mass_sizes(n, n_bins)
    acc_total, conf_of_bin, count = [0.0] * n_bins, [0.0] * n_bins, 0
    for perm in itertools.permutations(range(n)):
        confs = [pairs[i][0] for i in perm]
        if any(confs[i] > confs[i + 1] for i in range(n - 1)):
            continue
        start = 0
        for b, size in enumerate(sizes):
            members = [pairs[i] for i in perm[start : start + size]]
            start += size
            if members:
                acc_total[b] += sum(1.0 for _, correct in members if correct) / size
                conf_of_bin[b] = sum(conf for conf, _ in members) / size  # the same for every such order
        count += 1
    gaps = [abs(acc_total[b] / count - conf_of_bin[b]) for b in range(n_bins) if sizes[b] > 0]
    weights = [size / n for size in sizes if size > 0]
    if norm == "l1":
        return sum(w * g for w, g in zip(weights, gaps, strict=True))
    if norm == "l2":
        return math.sqrt(sum(w * g * g for w, g in zip(weights, gaps, strict=True)))
    return max(gaps)


def ref_brier(probs, target, ignore_index=None) -> float:
    """Mean over samples of the sum over classes of (p_c - 1[c = target])^2."""
    rows, targets = rows_and_targets(probs, target, ignore_index)
    if not rows:
        return math.nan
    return sum(ref_squared_errors(rows, targets)) / len(rows)


def ref_squared_errors(rows, targets) -> list[float]:
    """Per sample: sum over classes of (p_c - 1[c = target])^2."""
    return [
        sum((p - (1.0 if c == t else 0.0)) ** 2 for c, p in enumerate(row))
        for row, t in zip(rows, targets, strict=True)
    ]


def pskd_ece_percent(probs, target, bin_size=0.1) -> float:
    """PS-KD's ECE in %: numpy upper bounds arange(bin_size, 1 + bin_size, bin_size), bins (upper - size, upper]."""
    confidences = np.asarray(probs.float().numpy())
    truths = np.asarray(target.numpy())
    predictions = np.argmax(confidences, axis=1)
    max_conf = np.amax(confidences, axis=1)
    total = len(max_conf)
    weighted_gaps = []
    for upper in np.arange(bin_size, 1 + bin_size, bin_size):
        lower = upper - bin_size
        members = [(p, t, c) for p, t, c in zip(predictions, truths, max_conf, strict=True) if lower < c <= upper]
        if not members:
            continue
        accuracy = sum(1 for p, t, _ in members if p == t) / len(members)
        mean_conf = sum(c for _, _, c in members) / len(members)
        weighted_gaps.append(abs(accuracy - mean_conf) * len(members))
    return 100 * sum(weighted_gaps) / total


def pskd_aurc_eaurc(probs, target) -> tuple[float, float]:
    """PS-KD's calc_aurc: descending confidence, risk = cumsum(errors) / i, exact oracle sum_j j / (n - e + j) / n."""
    confidences = np.asarray(probs.double().numpy())
    labels = np.asarray(target.numpy())
    predictions = np.argmax(confidences, axis=1)
    order = np.argsort(np.max(confidences, axis=1))[::-1]
    wrong = (labels != predictions)[order]
    n = len(labels)
    aurc = float(np.mean(np.cumsum(wrong) / np.arange(1, n + 1)))
    n_err = int(wrong.sum())
    j = np.arange(1, n_err + 1, dtype=float)
    optimal = float(np.sum(j / (n - n_err + j)) / n)
    return aurc, aurc - optimal


def moon_aurc_eaurc(probs, target) -> tuple[float, float]:
    """Moon et al.'s calc_aurc_eaurc: stable sorted(reverse=True), risk list, closed-form oracle r + (1-r) ln(1-r)."""
    rows, targets = rows_and_targets(probs, target)
    pairs = confidence_correct(rows, targets)
    ordered = sorted(pairs, key=lambda pair: pair[0], reverse=True)
    risks, wrong = [], 0
    for i, (_, correct) in enumerate(ordered, start=1):
        wrong += 0 if correct else 1
        risks.append(wrong / i)
    r = risks[-1]
    optimal = r + (1 - r) * math.log(1 - r) if r < 1 else 1.0
    aurc = sum(risks) / len(risks)
    return aurc, aurc - optimal


def ref_risks_in_order(correct_in_order) -> list[float]:
    risks, wrong = [], 0
    for i, correct in enumerate(correct_in_order, start=1):
        wrong += 0 if correct else 1
        risks.append(wrong / i)
    return risks


def ref_risk_coverage_tie_mean(probs, target, ignore_index=None) -> list[float]:
    """Risk at each coverage averaged over every order of the samples that sorts confidences non-increasingly.

    Brute force over all permutations: only for small N.
    """
    rows, targets = rows_and_targets(probs, target, ignore_index)
    pairs = confidence_correct(rows, targets)
    n = len(pairs)
    total = [0.0] * n
    count = 0
    for perm in itertools.permutations(range(n)):
        confs = [pairs[i][0] for i in perm]
        if any(confs[i] < confs[i + 1] for i in range(n - 1)):
            continue
        for i, risk in enumerate(ref_risks_in_order([pairs[j][1] for j in perm])):
            total[i] += risk
        count += 1
    return [t / count for t in total]


def ref_oracle_aurc(n: int, n_errors: int) -> float:
    """AURC of the ordering with all correct samples first, from its risk list."""
    return sum(ref_risks_in_order([True] * (n - n_errors) + [False] * n_errors)) / n


def ref_nll(probs, target, ignore_index=None, tiny=FLOAT32_TINY) -> float:
    rows, targets = rows_and_targets(probs, target, ignore_index)
    if not rows:
        return math.nan
    return sum(-math.log(max(row[t], tiny)) for row, t in zip(rows, targets, strict=True)) / len(rows)


def ref_top_k_error(probs, target, k, ignore_index=None) -> float:
    """Target outside the first k classes of the order (probability descending, then class index ascending)."""
    rows, targets = rows_and_targets(probs, target, ignore_index)
    if not rows:
        return math.nan
    misses = 0
    for row, t in zip(rows, targets, strict=True):
        ranking = sorted(range(len(row)), key=lambda c: (-row[c], c))
        misses += 0 if t in ranking[:k] else 1
    return misses / len(rows)


def ref_target_rank(probs, target) -> list[int]:
    rows, targets = rows_and_targets(probs, target)
    return [sorted(range(len(row)), key=lambda c: (-row[c], c)).index(t) for row, t in zip(rows, targets, strict=True)]


def random_probs(
    n: int, c: int, seed: int, ties: bool = False, accuracy: float = 0.6, temperature: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded softmax probabilities (float32) and targets; ``ties`` quantises probabilities so many rows/classes tie.

    With ``ties`` every row is an integer vector divided by its sum (exact ties inside a row and repeated rows).
    """
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (n,), generator=gen)
    if ties:
        counts = torch.randint(0, 4, (n, c), generator=gen).float()
        counts[:, 0] += 1  # no all-zero row
        hit = torch.rand(n, generator=gen) < accuracy
        counts[hit, target[hit]] += 2
        return counts / counts.sum(1, keepdim=True), target
    logits = torch.randn(n, c, generator=gen) * temperature
    hit = torch.rand(n, generator=gen) < accuracy
    logits[hit, target[hit]] += 3.0
    return logits.softmax(1), target
