"""Argument checks of the seq2seq models: `ValueError`s naming the argument, what was expected and what was given."""

from __future__ import annotations

import math

from torch import Tensor


def check_int(owner: str, name: str, value: object, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not ``bool``) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: `{name}` must be an integer >= {minimum}, got {value!r}")


def check_probability(owner: str, name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a float in ``[0, 1)`` (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{owner}: `{name}` must be a float in [0, 1), got {value!r}")


def check_non_negative(owner: str, name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite float ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: `{name}` must be a finite float >= 0, got {value!r}")


def check_finite(owner: str, name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}: `{name}` must be a finite float, got {value!r}")


def check_source(owner: str, source: Tensor, source_lengths: Tensor) -> None:
    """``source (B, S)`` int ids and ``source_lengths (B,)`` in ``[1, S]`` (one host sync for the range check)."""
    if source.ndim != 2 or source_lengths.shape != source.shape[:1]:
        raise ValueError(
            f"{owner}: `source` must be (B, S) and `source_lengths` (B,), got {tuple(source.shape)} and "
            f"{tuple(source_lengths.shape)}"
        )
    if source.dtype.is_floating_point or source_lengths.dtype.is_floating_point:
        raise ValueError(
            f"{owner}: `source` and `source_lengths` must be integer tensors, got {source.dtype} and "
            f"{source_lengths.dtype}"
        )
    if source_lengths.numel() and not bool(((source_lengths >= 1) & (source_lengths <= source.shape[1])).all()):
        raise ValueError(
            f"{owner}: `source_lengths` must lie in [1, {source.shape[1]}] (every source holds at least its EOS), "
            f"got {source_lengths.tolist()}"
        )


def check_vocab(owner: str, src_vocab_size: object, tgt_vocab_size: object, pad_id: object) -> None:
    """Vocabulary sizes ``>= 2`` and a ``pad_id`` that is a valid id of both vocabularies."""
    check_int(owner, "src_vocab_size", src_vocab_size, 2)
    check_int(owner, "tgt_vocab_size", tgt_vocab_size, 2)
    check_int(owner, "pad_id", pad_id, 0)
    smallest = min(src_vocab_size, tgt_vocab_size)  # type: ignore[type-var]
    if pad_id >= smallest:  # type: ignore[operator]
        raise ValueError(f"{owner}: `pad_id` must be a valid id of both vocabularies (< {smallest}), got {pad_id!r}")
