"""A memory-mapped prediction cache on disk, for tables larger than RAM, committed atomically once per epoch."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_skd.callbacks.prediction_table import NEVER, PredictionTable

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int16: np.int16, torch.int32: np.int32}
_LATEST = "LATEST"


class MemmapPredictionTable(PredictionTable):
    """A :class:`~lightning_skd.callbacks.prediction_table.PredictionTable` in memory-mapped ``.npy`` files.

    Layout: ``gen-<epoch>/`` holds the table as it was at the end of that (0-based) epoch, and the file ``LATEST``
    names the newest complete generation. During epoch ``t`` teachers are read from the latest generation (read-only)
    and new predictions are written to ``gen-<t>.partial/``, a copy of it. At the end of the epoch the partial
    generation is flushed and fsynced, renamed to ``gen-<t>/`` (an atomic rename), and ``LATEST`` is replaced
    atomically. A process killed at any point therefore leaves the previous generation intact and readable, and a
    ``.partial`` folder is never read (it is deleted when the cache is opened again). The newest
    ``keep_generations`` generations are kept so that the previous epoch's checkpoint can still be resumed.

    Because reads come from the finished generation, a sample met twice in one epoch (sampler padding) gets its
    epoch-(t-1) teacher both times. bfloat16 storage is not offered (numpy has no bfloat16); use float16.

    Args:
        cache_dir: Folder of this table (one per process: the callback appends ``rank<r>``).
        num_rows: Rows.
        num_classes: Classes.
        dtype: ``torch.float32`` or ``torch.float16``.
        topk: Keep only the ``topk`` largest probabilities per sample.
        keep_generations: Finished generations kept on disk (at least 1).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> table = MemmapPredictionTable(folder, num_rows=2, num_classes=2)
        >>> table.write(torch.tensor([1]), table.compress(torch.tensor([[0.5, 0.5]])), epoch=0)
        >>> table.end_epoch(0)
        >>> MemmapPredictionTable(folder, num_rows=2, num_classes=2).read(torch.tensor([1, 0]), epoch=1)
        (tensor([[0.5000, 0.5000],
                [0.0000, 0.0000]]), tensor([ True, False]))

    """

    def __init__(
        self,
        cache_dir: str | Path,
        num_rows: int,
        num_classes: int,
        dtype: torch.dtype = torch.float32,
        topk: int | None = None,
        keep_generations: int = 2,
    ) -> None:
        if dtype not in (torch.float32, torch.float16):
            raise ValueError(
                f"`cache_dtype` must be float32 or float16 with `cache_dir` (numpy has no bfloat16), got {dtype}."
            )
        if keep_generations < 1:
            raise ValueError(f"`keep_generations` must be at least 1, got {keep_generations}.")
        super().__init__(num_rows, num_classes, dtype, topk)
        self.cache_dir = Path(cache_dir)
        self.keep_generations = keep_generations
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for partial in self.cache_dir.glob("gen-*.partial"):
            shutil.rmtree(partial)  # left by a process killed mid-epoch: never valid
        self.committed_epoch: int | None = self._read_latest()
        self._committed: dict[str, np.ndarray] | None = None
        self._working: dict[str, np.ndarray] | None = None
        self._working_epoch: int | None = None
        if self.committed_epoch is not None:
            self._committed = self._open(self._generation_dir(self.committed_epoch), mode="r")
            self._check_shapes(self._committed)

    @property
    def holds_generations(self) -> bool:
        """Whether the folder already holds finished generations (from this run or an earlier one)."""
        return bool(self._finished_epochs())

    storage = "memmap"

    @property
    def device(self) -> torch.device:
        """Reads return CPU tensors."""
        return torch.device("cpu")

    @property
    def nbytes(self) -> int:
        """Bytes of one generation on disk (the RAM used is what the OS pages in)."""
        return self.num_rows * sum(
            int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
            for shape, dtype in self._specs().values()
        )

    def begin_epoch(self, epoch: int) -> None:
        """Start ``gen-<epoch>.partial`` as a copy of the latest finished generation."""
        if self._working_epoch == epoch:
            return
        partial = self._generation_dir(epoch, partial=True)
        if partial.exists():
            shutil.rmtree(partial)
        if self.committed_epoch is not None:
            shutil.copytree(self._generation_dir(self.committed_epoch), partial)
            self._working = self._open(partial, mode="r+")
        else:
            partial.mkdir(parents=True)
            self._working = self._create(partial)
        self._working_epoch = epoch

    def end_epoch(self, epoch: int) -> None:
        """Flush, fsync and atomically publish ``gen-<epoch>``; then drop generations beyond ``keep_generations``."""
        if self._working_epoch != epoch:
            return
        partial = self._generation_dir(epoch, partial=True)
        for array in self._working.values():
            array.flush()
        self._working = None
        for file in partial.iterdir():
            _fsync(file)
        final = self._generation_dir(epoch)
        if final.exists():
            shutil.rmtree(final)
        os.rename(partial, final)
        _fsync(self.cache_dir)
        self._write_latest(epoch)
        self.committed_epoch, self._working_epoch = epoch, None
        self._committed = self._open(final, mode="r")
        generations = sorted(self._finished_epochs())
        for old in generations[: -self.keep_generations]:
            shutil.rmtree(self._generation_dir(old))

    def rows_written_in(self, epoch: int) -> int:
        """Rows of the epoch's partial generation already written in ``epoch``."""
        if self._working_epoch != epoch:
            return 0
        return int((np.asarray(self._working["stamps"]) == epoch).sum())

    def _stamps_of(self, keys: Tensor, epoch: int) -> Tensor:
        self.begin_epoch(epoch)
        return torch.from_numpy(np.asarray(self._working["stamps"][keys.numpy()]))

    def _store(self, keys: Tensor, payload: dict[str, Tensor], epoch: int) -> None:
        order = torch.argsort(keys)  # sorted writes touch pages in order
        rows = keys[order].numpy()
        self._working["values"][rows] = _to_numpy(payload["values"][order])
        if self.topk is not None:
            self._working["class_ids"][rows] = _to_numpy(payload["class_ids"][order])
        self._working["stamps"][rows] = epoch

    def _gather(self, keys: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Rows of the latest finished generation (see :meth:`PredictionTable.read_teacher`)."""
        if self._committed is None:
            class_ids = None if self.topk is None else torch.zeros(len(keys), self.width, dtype=torch.long)
            return torch.full((len(keys),), NEVER, dtype=torch.int32), torch.zeros(len(keys), self.width), class_ids
        rows = keys.numpy()
        stamps = torch.from_numpy(np.asarray(self._committed["stamps"][rows]))
        values = torch.from_numpy(np.asarray(self._committed["values"][rows], dtype=np.float32))
        class_ids = None
        if self.topk is not None:
            class_ids = torch.from_numpy(np.asarray(self._committed["class_ids"][rows], dtype=np.int64))
        return stamps, values, class_ids

    def state_dict(self) -> dict[str, Any]:
        """Where the table is and which generation a checkpoint taken now belongs to; not the table itself."""
        return {**self._metadata(), "cache_dir": str(self.cache_dir), "committed_epoch": self.committed_epoch}

    def restore(self, state: dict[str, Any]) -> None:
        """Point reads at the generation a checkpoint was taken with; refuse if it is gone or differs in shape."""
        for key in ("num_rows", "num_classes", "topk", "dtype"):
            if state[key] != (str(self.dtype) if key == "dtype" else getattr(self, key)):
                raise ValueError(f"The checkpoint's disk cache has {key}={state[key]!r}, this cache has another.")
        epoch = state["committed_epoch"]
        if epoch is None:
            self.committed_epoch, self._committed = None, None
            return
        folder = self._generation_dir(epoch)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"The checkpoint needs the Self-KD cache generation of epoch {epoch} at {folder}, which is not there "
                f"(kept: {sorted(self._finished_epochs())}). Resume from a newer checkpoint, raise "
                "`cache_keep_generations`, or start the cache afresh with a new `cache_dir`."
            )
        self.committed_epoch = epoch
        self._committed = self._open(folder, mode="r")
        self._check_shapes(self._committed)

    # ---------------------------------------------------------------- files
    def _generation_dir(self, epoch: int, partial: bool = False) -> Path:
        return self.cache_dir / (f"gen-{epoch:06d}" + (".partial" if partial else ""))

    def _finished_epochs(self) -> list[int]:
        return [int(p.name.removeprefix("gen-")) for p in self.cache_dir.glob("gen-*") if p.name[4:].isdigit()]

    def _read_latest(self) -> int | None:
        latest = self.cache_dir / _LATEST
        if not latest.exists():
            return None
        epoch = json.loads(latest.read_text())["epoch"]
        return epoch if self._generation_dir(epoch).is_dir() else None

    def _write_latest(self, epoch: int) -> None:
        temporary = self.cache_dir / f"{_LATEST}.tmp"
        temporary.write_text(json.dumps({"epoch": epoch}))
        _fsync(temporary)
        os.replace(temporary, self.cache_dir / _LATEST)
        _fsync(self.cache_dir)

    def _specs(self) -> dict[str, tuple[tuple[int, ...], type]]:
        specs = {
            "values": ((self.num_rows, self.width), _NUMPY_DTYPES[self.dtype]),
            "stamps": ((self.num_rows,), np.int32),
        }
        if self.topk is not None:
            specs["class_ids"] = ((self.num_rows, self.topk), _NUMPY_DTYPES[self.id_dtype])
        return specs

    def _create(self, folder: Path) -> dict[str, np.ndarray]:
        arrays = {}
        for name, (shape, dtype) in self._specs().items():
            array = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
            array[...] = NEVER if name == "stamps" else 0
            arrays[name] = array
        return arrays

    def _open(self, folder: Path, mode: str) -> dict[str, np.ndarray]:
        return {name: np.load(folder / f"{name}.npy", mmap_mode=mode) for name in self._specs()}

    def _check_shapes(self, arrays: dict[str, np.ndarray]) -> None:
        for name, (shape, dtype) in self._specs().items():
            if arrays[name].shape != shape or arrays[name].dtype != dtype:
                raise ValueError(
                    f"The Self-KD disk cache in {self.cache_dir} holds {name} of shape {arrays[name].shape} "
                    f"({arrays[name].dtype}), expected {shape} ({np.dtype(dtype)}): the dataset, model or cache "
                    "options changed. Use a new `cache_dir`."
                )


def _to_numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
