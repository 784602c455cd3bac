"""Post-hoc temperature scaling (Guo et al., *On Calibration of Modern Neural Networks*, ICML 2017).

One scalar ``T > 0`` divides every logit; it is fitted on held-out data by minimising the mean negative
log-likelihood of ``softmax(logits / T)``. Dividing by a positive number keeps the order of the classes, so the
predicted class (and the top-k error) never changes; only the confidence does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from lightning_skd._constants import IGNORE_INDEX

__all__ = ["fit_temperature"]

#: Logit elements converted to float64 at a time (bounds the extra memory of one evaluation of the objective).
_CHUNK_ELEMENTS = 1 << 22
#: Newton / bisection steps at most (bisection alone halves a log-interval of at most ln(1e12) 50 times in fewer).
_MAX_ITERATIONS = 200
_EPS = torch.finfo(torch.float64).eps


def fit_temperature(
    logits: Tensor,
    target: Tensor,
    ignore_index: int | None = IGNORE_INDEX,
    min_temperature: float = 0.01,
    max_temperature: float = 100.0,
    sum_across_processes: Callable[[Tensor], Tensor] | None = None,
) -> float:
    r"""The temperature ``T`` in ``[min_temperature, max_temperature]`` minimising the NLL of ``softmax(logits / T)``.

    The objective is minimised over ``β = 1 / T``: ``g(β) = mean_n [logsumexp(β z_n) - β z_{n, y_n}]`` is convex in
    ``β`` (its second derivative is the mean variance of ``z`` under ``softmax(β z)``), so the root of
    ``g'(β) = mean_n [E_{softmax(β z_n)}[z_n] - z_{n, y_n}]`` is the global minimum, and it is the same ``T`` as
    Guo et al.'s fit over ``T`` (or ``log T``). The root is found by Newton's method safeguarded by bisection in
    ``log β`` (a bracket that shrinks every step), in float64, to the precision of float64: the result is exact and
    deterministic, and does not depend on a learning rate or a starting point.

    The answer is a bound when the NLL keeps falling beyond it: ``min_temperature`` when the split is perfectly
    separated (every target the unique arg-max: sharper is always better), ``max_temperature`` when the logits are
    no better than the uniform distribution. When the NLL does not depend on ``T`` at all (every row constant), the
    answer is ``1.0`` (leave the logits as they are).

    Args:
        logits: Logits ``(N, C)``, or ``(..., C)`` (e.g. ``(B, T, V)`` tokens), any floating dtype.
        target: Class indices of the shape of ``logits`` without its last dimension.
        ignore_index: Targets with this value (padding) are left out; ``None`` keeps every target.
        min_temperature: Smallest ``T`` returned, ``> 0``.
        max_temperature: Largest ``T`` returned, ``> min_temperature``.
        sum_across_processes: For distributed use: a function that sums a float64 tensor over all processes (e.g.
            ``lambda t: trainer.strategy.reduce(t, reduce_op="sum")``). Every process calls ``fit_temperature`` with
            its own shard of the data (an empty shard is fine) and gets the fit on the union of the shards: the
            search only needs sums over samples, reduced once per step (two float64 numbers; the count once).

    Returns:
        ``T`` as a Python float.

    Raises:
        ValueError: On non-floating or non-finite logits, mismatched shapes, non-integer targets or targets out of
            ``[0, C)``, bad bounds, or no target left after ``ignore_index``. With ``sum_across_processes`` every
            process raises when one of them has bad input (after one reduction, so none is left waiting).

    Example:
        Two classes, a logit gap of 2 and three of four predictions right: the NLL is lowest where
        ``sigmoid(2 / T) = 3/4``, i.e. ``T = 2 / ln 3``.

        >>> logits = torch.tensor([[2.0, 0.0]] * 4)
        >>> round(fit_temperature(logits, torch.tensor([0, 0, 0, 1])), 6), round(2 / math.log(3), 6)
        (1.820478, 1.820478)

    """
    check_temperature_bounds("fit_temperature", min_temperature, max_temperature)
    reduce = sum_across_processes if sum_across_processes is not None else (lambda total: total)
    device = logits.device if isinstance(logits, Tensor) and logits.device.type != "mps" else torch.device("cpu")
    try:
        logits, target = _flatten(logits, target, ignore_index)
        error = None
    except ValueError as err:
        if sum_across_processes is None:
            raise
        error = err  # raised on every process after the first reduction, so that none waits for it
        logits, target = torch.empty(0, 1, device=device), torch.empty(0, dtype=torch.long, device=device)
    count, failed = reduce(torch.tensor([len(target), error is not None], dtype=torch.float64, device=device)).tolist()
    if error is not None:
        raise error
    if failed:
        raise ValueError("fit_temperature: the logits or targets of another process are invalid (see its error)")
    if count == 0:
        raise ValueError("fit_temperature: no target to fit on (all of them are `ignore_index`, or none were given)")

    def derivatives(beta: float) -> tuple[float, float]:
        first, second = reduce(_derivative_sums(logits, target, beta)).tolist()
        return first, second

    beta_low, beta_high = 1.0 / max_temperature, 1.0 / min_temperature
    beta = min(max(1.0, beta_low), beta_high)
    slope, curvature = derivatives(beta)
    if slope == 0.0:
        return 1.0 / beta  # T = 1 (or the bound nearest to it) is already optimal
    # g' is non-decreasing: the root lies between the start and the bound on the downhill side, or beyond that bound
    if slope > 0.0 and derivatives(beta_low)[0] >= 0.0:
        return float(max_temperature)
    if slope < 0.0 and derivatives(beta_high)[0] <= 0.0:
        return float(min_temperature)
    for _ in range(_MAX_ITERATIONS):
        if slope > 0.0:
            beta_high = beta
        else:
            beta_low = beta
        step = beta - slope / curvature if curvature > 0.0 else math.nan
        if abs(step - beta) <= 4 * _EPS * beta:  # Newton's step is below float64 resolution: at the root
            return 1.0 / step
        if not beta_low < step < beta_high:  # Newton left the bracket: bisect it in log space
            step = math.sqrt(beta_low * beta_high)
        if beta_high - beta_low <= 4 * _EPS * beta:
            break
        beta = step
        slope, curvature = derivatives(beta)
        if slope == 0.0:
            break
    return 1.0 / beta


def check_temperature_bounds(owner: str, min_temperature: float, max_temperature: float) -> None:
    """Raise a ``ValueError`` starting with ``owner`` unless ``0 < min_temperature < max_temperature < inf``."""
    for name, value in (("min_temperature", min_temperature), ("max_temperature", max_temperature)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{owner}: `{name}` must be a finite number > 0, got {value!r}")
    if not min_temperature < max_temperature:
        raise ValueError(
            f"{owner}: `min_temperature` must be below `max_temperature`, got {min_temperature!r} and "
            f"{max_temperature!r}"
        )


def _flatten(logits: Tensor, target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """Checked ``(N, C)`` logits and ``(N,)`` targets without the ignored ones."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.ndim < 1:
        raise ValueError(f"fit_temperature: `logits` must be a floating tensor (..., C), got {_describe(logits)}")
    integer = isinstance(target, Tensor) and not (target.is_floating_point() or target.is_complex())
    if not integer or target.dtype == torch.bool:
        raise ValueError(f"fit_temperature: `target` must be an integer tensor, got {_describe(target)}")
    if target.shape != logits.shape[:-1]:
        raise ValueError(
            f"fit_temperature: `target` must have the shape of `logits` without its last (class) dimension, got "
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)}"
        )
    num_classes = logits.shape[-1]
    if logits.device.type == "mps":  # no float64 there
        logits, target = logits.cpu(), target.cpu()
    logits, target = logits.detach().reshape(-1, num_classes), target.reshape(-1)
    if ignore_index is not None:
        keep = target != ignore_index
        logits, target = logits[keep], target[keep]
    if len(target) and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(
            f"fit_temperature: targets must lie in [0, {num_classes}) (or equal ignore_index={ignore_index}), got "
            f"values from {int(target.min())} to {int(target.max())}"
        )
    if not torch.isfinite(logits).all():
        raise ValueError("fit_temperature: `logits` hold NaN or infinite values")
    return logits, target.long()


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return repr(value)


def _derivative_sums(logits: Tensor, target: Tensor, beta: float) -> Tensor:
    """``[Σ_n g_n'(β), Σ_n g_n''(β)]`` in float64: ``E_p[z] - z_y`` and ``Var_p[z]`` with ``p = softmax(β z)``."""
    totals = torch.zeros(2, dtype=torch.float64, device=logits.device)
    rows = max(1, _CHUNK_ELEMENTS // max(1, logits.shape[1]))
    for z, y in zip(logits.split(rows), target.split(rows), strict=True):
        z = z.double()
        probs = (beta * z).softmax(dim=1)
        mean = (probs * z).sum(dim=1)
        variance = (probs * (z - mean[:, None]).square()).sum(dim=1)
        totals += torch.stack([(mean - z.gather(1, y[:, None]).squeeze(1)).sum(), variance.sum()])
    return totals
