"""``PredictionWriter``: the outputs of ``trainer.predict`` from every process, in one file, ordered by sample index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from lightning_skd._lightning import BasePredictionWriter, check_trainer, pl, rank_zero_info


class PredictionWriter(BasePredictionWriter):
    """Write the predictions of all processes to ``<output_dir>/<filename>``, one row per sample, sorted by index.

    Under DDP each process only sees its share of the predict set, so ``trainer.predict`` returns a different half
    on each rank. This writer saves every rank's rows (``<filename>.rank<r>``), waits for all ranks, and rank 0
    concatenates them, sorts by the ``"index"`` entry, refuses a sample seen twice, saves the result and removes the
    per-rank parts. Single-process runs write the same file. The ``lightning-skd predict`` command adds this writer
    unless the config already has a prediction writer.

    ``predict_step`` must return a dict of tensors whose first dimension is the batch, with the samples' dataset
    positions under ``"index"`` (as the modules of :mod:`lightning_skd.models` do). Rows of one key whose other
    dimensions differ between batches (e.g. hypotheses of different lengths) are right-padded with zeros to the
    largest size; return the real lengths alongside.

    Args:
        output_dir: Folder of the file; ``None`` uses ``trainer.log_dir`` (or ``default_root_dir`` without a logger).
        filename: Name of the merged file (``torch.save`` of a dict of tensors, loadable with ``weights_only=True``).

    """

    def __init__(self, output_dir: str | Path | None = None, filename: str = "predictions.pt") -> None:
        super().__init__(write_interval="epoch")
        if not isinstance(filename, str) or not filename or "/" in filename:
            raise ValueError(f"PredictionWriter: `filename` must be a plain file name, got {filename!r}")
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.filename = filename
        self.path: Path | None = None  # the merged file of the last predict run

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the trainer (a Trainer of the Lightning package lightning_skd was imported on)."""
        check_trainer(trainer, "PredictionWriter")

    @override
    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        """Save this rank's rows, then (rank 0) merge all ranks' rows by sample index."""
        # trainer.log_dir broadcasts under DDP: resolved on every rank.
        folder = self.output_dir or Path(trainer.log_dir or trainer.default_root_dir)
        path = folder / self.filename
        rows = _concatenate(predictions)
        part = path.with_name(f"{self.filename}.rank{trainer.global_rank}")
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(rows, part)
        trainer.strategy.barrier("PredictionWriter.parts")
        if trainer.is_global_zero:
            parts = [path.with_name(f"{self.filename}.rank{rank}") for rank in range(trainer.world_size)]
            merged = _merge([torch.load(p, weights_only=True) for p in parts])
            torch.save(merged, path)
            for p in parts:
                p.unlink()
            rank_zero_info(f"PredictionWriter: {len(merged['index'])} predictions written to {path}")
        trainer.strategy.barrier("PredictionWriter.merged")
        self.path = path


def _concatenate(predictions: Any) -> dict[str, Tensor]:
    """One rank's batch outputs (a list, or a list per dataloader) as one dict of ``(N, ...)`` CPU tensors."""
    if predictions and isinstance(predictions[0], list):  # Lightning nests the outputs per dataloader if several
        raise ValueError(
            f"PredictionWriter: expected one predict dataloader (indices identify samples of one dataset), got "
            f"{len(predictions)}"
        )
    batches = list(predictions)
    for batch in batches:
        if not (isinstance(batch, dict) and isinstance(batch.get("index"), Tensor)):
            raise ValueError(
                "PredictionWriter: predict_step must return a dict of tensors with the samples' dataset positions "
                f"under 'index'; got {type(batch).__name__}"
                + (f" with keys {sorted(batch)}" if isinstance(batch, dict) else "")
            )
    if not batches:
        return {"index": torch.zeros(0, dtype=torch.long)}
    return {key: _cat_padded([b[key].detach().cpu() for b in batches]) for key in batches[0]}


def _cat_padded(tensors: list[Tensor]) -> Tensor:
    """Concatenate along dimension 0, right-padding the other dimensions with zeros where their sizes differ."""
    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].ndim)]
    padded = []
    for t in tensors:
        if list(t.shape[1:]) != shape:
            row = t.new_zeros((t.shape[0], *shape))
            row[(slice(None), *(slice(0, n) for n in t.shape[1:]))] = t
            t = row
        padded.append(t)
    return torch.cat(padded)


def _merge(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Rows of all ranks, sorted by ``"index"``; a sample predicted twice is an error."""
    keys = max(parts, key=len).keys()
    merged = {key: _cat_padded([p[key] for p in parts if key in p]) for key in keys}
    order = merged["index"].argsort(stable=True)
    merged = {key: value[order] for key, value in merged.items()}
    duplicates = merged["index"][1:][merged["index"][1:] == merged["index"][:-1]]
    if len(duplicates):
        raise RuntimeError(
            f"PredictionWriter: samples {duplicates.unique()[:10].tolist()} were predicted by more than one process; "
            "the predict loader must not repeat samples across processes (Lightning's default predict sampler and "
            "the DataModules of lightning_skd.data do not)."
        )
    return merged
