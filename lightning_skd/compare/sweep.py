"""The sweep file: methods (one config each), seeds, baseline, metrics, output folder and extra arguments."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Metric:
    """One column of the tables: a logged test metric, its title, display scale and direction.

    Attributes:
        key: The name the model logs at test time (``trainer.test``'s result), e.g. ``test/top1_err``.
        label: Column title, e.g. ``Top-1 err (%)``.
        scale: Displayed value = logged value × ``scale`` (``100`` for a fraction shown in %).
        lower_is_better: Direction of improvement (``False`` for BLEU, accuracy).

    """

    key: str
    label: str
    scale: float = 1.0
    lower_is_better: bool = True


#: The columns when a sweep file has no ``metrics``: fractions shown in the units of Kim et al.'s Table 1.
CLASSIFICATION_METRICS = (
    Metric("test/top1_err", "Top-1 err (%)", 100.0),
    Metric("test/top5_err", "Top-5 err (%)", 100.0),
    Metric("test/nll", "NLL", 1.0),
    Metric("test/ece", "ECE (%)", 100.0),
    Metric("test/oce", "over-conf. ECE (%)", 100.0),
    Metric("test/uce", "under-conf. ECE (%)", 100.0),
    Metric("test/brier", "Brier", 1.0),
    Metric("test/aurc", "AURC (×10³)", 1000.0),
    Metric("test/eaurc", "E-AURC (×10³)", 1000.0),
)
#: Checkpoints ``trainer.test`` may load after ``fit`` (``None``: the weights ``fit`` ended with).
TEST_CHECKPOINTS = (None, "best", "last")
#: Appended to a method's name for the row of its temperature-scaled metrics.
TEMPERATURE_SCALING_SUFFIX = " + TS"


def scaled_key(key: str) -> str:
    """The key :class:`~lightning_skd.callbacks.TemperatureScaling` logs a test metric under after scaling.

    Example:
        >>> scaled_key("test/nll")
        'test_ts/nll'

    """
    stage, _, name = key.partition("/")
    return f"{stage}_ts/{name}"


@dataclass
class Method:
    """One row of the table: a display name and the config that trains it.

    With ``temperature_scaling`` its runs also report their test metrics after temperature scaling
    (:class:`~lightning_skd.callbacks.TemperatureScaling`, added to the runs' callbacks unless the config has one),
    tabulated as one more row, :attr:`scaled_name`, built from the same runs.
    """

    name: str
    config: Path
    temperature_scaling: bool = False

    @property
    def scaled_name(self) -> str:
        """Name of the row of the temperature-scaled metrics: ``"<name> + TS"``."""
        return self.name + TEMPERATURE_SCALING_SUFFIX

    @property
    def slug(self) -> str:
        """Folder name of the method's runs."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_").lower() or "method"


@dataclass
class Sweep:
    """A parsed sweep file (see :mod:`lightning_skd.compare`) and the command line's execution options.

    Attributes:
        methods: The table's rows, in order.
        seeds: Seeds of every method.
        baseline: Name of the method the others are compared with, seed by seed.
        output_dir: Folder of the tables, figures and ``runs/``.
        args: Extra ``lightning-skd`` arguments of every run.
        metrics: The table's columns.
        test_ckpt_path: Checkpoint ``trainer.test`` loads after ``fit`` (``None``, ``"best"`` or ``"last"``).
        jobs: Runs at a time (command line only): 1 runs them one after the other in this process, more in worker
            processes.
        threads: Torch CPU threads of each run (command line only; ``None``: torch's default in this process, the
            visible CPUs divided by ``jobs`` in workers).

    """

    methods: list[Method]
    seeds: list[int]
    baseline: str
    output_dir: Path
    args: list[str] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=lambda: list(CLASSIFICATION_METRICS))
    test_ckpt_path: str | None = None
    jobs: int = 1
    threads: int | None = None

    @classmethod
    def from_file(cls, path: Path) -> Sweep:
        """Read and check a sweep file; config paths are resolved relative to its folder."""
        path = Path(path)
        spec = yaml.safe_load(path.read_text())
        if not isinstance(spec, dict) or not isinstance(spec.get("methods"), list) or not spec["methods"]:
            raise ValueError(f"{path}: a sweep file needs a non-empty list `methods` of {{name, config}} entries.")
        methods = _parse_methods(path, spec["methods"])
        names = row_names(methods)
        seeds = spec.get("seeds", [0, 1, 2])
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
            raise ValueError(f"{path}: `seeds` must be a non-empty list of integers, got {seeds!r}.")
        baseline = spec.get("baseline", names[0])
        if baseline not in names:
            raise ValueError(f"{path}: `baseline` must be one of the method names {names}, got {baseline!r}.")
        args = spec.get("args", []) or []
        if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            raise ValueError(f"{path}: `args` must be a list of strings, got {args!r}.")
        test_ckpt_path = spec.get("test_ckpt_path")
        if test_ckpt_path not in TEST_CHECKPOINTS:
            raise ValueError(f"{path}: `test_ckpt_path` must be one of {TEST_CHECKPOINTS}, got {test_ckpt_path!r}.")
        metrics = _parse_metrics(path, spec["metrics"]) if "metrics" in spec else list(CLASSIFICATION_METRICS)
        unscalable = [m.key for m in metrics if not m.key.startswith("test/")]
        if any(m.temperature_scaling for m in methods) and unscalable:
            raise ValueError(
                f"{path}: `temperature_scaling` tabulates the test_ts/ counterparts of test/ metrics; the metrics "
                f"{unscalable} have none."
            )
        output_dir = Path(spec.get("output_dir", f"outputs/compare/{path.stem}"))
        return cls(methods, seeds, baseline, output_dir, args, metrics, test_ckpt_path)

    @property
    def row_names(self) -> list[str]:
        """The table's rows in order: every method, each followed by its ``+ TS`` row if it asks for one."""
        return row_names(self.methods)

    def run_dir(self, method: Method, seed: int) -> Path:
        """Folder of one run: ``<output_dir>/runs/<method slug>/seed<seed>``."""
        return self.output_dir / "runs" / method.slug / f"seed{seed}"


#: The fields of an entry of `methods`.
_METHOD_FIELDS = {"name", "config", "temperature_scaling"}


def row_names(methods: list[Method]) -> list[str]:
    """Every method's name, each followed by its ``+ TS`` row's name if it has ``temperature_scaling``."""
    return [name for m in methods for name in (m.name, *([m.scaled_name] if m.temperature_scaling else []))]


def _parse_methods(path: Path, entries: list[Any]) -> list[Method]:
    methods = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"name", "config"} <= set(entry) <= _METHOD_FIELDS:
            raise ValueError(
                f"{path}: each entry of `methods` must have `name` and `config` (and optionally "
                f"`temperature_scaling`), got {entry!r}."
            )
        config = (path.parent / entry["config"]).resolve()
        if not config.is_file():
            raise FileNotFoundError(f"{path}: the config of method {entry['name']!r} does not exist: {config}")
        scaling = entry.get("temperature_scaling", False)
        if not isinstance(scaling, bool):
            raise ValueError(
                f"{path}: `temperature_scaling` of method {entry['name']!r} must be true or false, got {scaling!r}."
            )
        methods.append(Method(str(entry["name"]), config, scaling))
    names = [m.name for m in methods]
    slugs = [m.slug for m in methods]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"{path}: method names must be distinct (also as folder names), got {names}.")
    rows = row_names(methods)
    if len(set(rows)) != len(rows):
        raise ValueError(f"{path}: the table's row names must be distinct, got {rows} (a `+ TS` row names a method).")
    return methods


def _parse_metrics(path: Path, entries: Any) -> list[Metric]:
    if not isinstance(entries, list) or not entries:
        raise ValueError(
            f"{path}: `metrics` must be a non-empty list of {{key, label, scale, lower_is_better}} entries, "
            f"got {entries!r}."
        )
    metrics = [_parse_metric(path, entry) for entry in entries]
    keys = [m.key for m in metrics]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: the `key`s of `metrics` must be distinct, got {keys}.")
    return metrics


def _parse_metric(path: Path, entry: Any) -> Metric:
    allowed = {"key", "label", "scale", "lower_is_better"}
    if not isinstance(entry, dict) or "key" not in entry or not set(entry) <= allowed:
        raise ValueError(
            f"{path}: each entry of `metrics` needs `key` and may have `label`, `scale`, `lower_is_better`, "
            f"got {entry!r}."
        )
    key, label = entry["key"], entry.get("label", entry["key"])
    scale, lower = entry.get("scale", 1.0), entry.get("lower_is_better", True)
    if not (isinstance(key, str) and key and isinstance(label, str)):
        raise ValueError(f"{path}: `key` and `label` of a metric must be strings, got {entry!r}.")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale == 0:
        raise ValueError(f"{path}: `scale` of metric {key!r} must be a non-zero number, got {scale!r}.")
    if not isinstance(lower, bool):
        raise ValueError(f"{path}: `lower_is_better` of metric {key!r} must be true or false, got {lower!r}.")
    return Metric(key, label, float(scale), lower)
