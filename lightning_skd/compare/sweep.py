"""The sweep file: methods (one config each), seeds, baseline, output folder and extra arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# (metric key, column title, scale): fractions shown in the units of Kim et al.'s Table 1.
METRICS = [
    ("test/top1_err", "Top-1 err (%)", 100.0),
    ("test/top5_err", "Top-5 err (%)", 100.0),
    ("test/nll", "NLL", 1.0),
    ("test/ece", "ECE (%)", 100.0),
    ("test/aurc", "AURC (×10³)", 1000.0),
    ("test/eaurc", "E-AURC (×10³)", 1000.0),
]


@dataclass
class Method:
    """One row of the table: a display name and the config that trains it."""

    name: str
    config: Path

    @property
    def slug(self) -> str:
        """Folder name of the method's runs."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_").lower() or "method"


@dataclass
class Sweep:
    """A parsed sweep file (see the module docstring)."""

    methods: list[Method]
    seeds: list[int]
    baseline: str
    output_dir: Path
    args: list[str] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: Path) -> Sweep:
        """Read and check a sweep file; config paths are resolved relative to its folder."""
        spec = yaml.safe_load(Path(path).read_text())
        if not isinstance(spec, dict) or not isinstance(spec.get("methods"), list) or not spec["methods"]:
            raise ValueError(f"{path}: a sweep file needs a non-empty list `methods` of {{name, config}} entries.")
        methods = []
        for entry in spec["methods"]:
            if not isinstance(entry, dict) or set(entry) != {"name", "config"}:
                raise ValueError(
                    f"{path}: each entry of `methods` must have exactly `name` and `config`, got {entry!r}."
                )
            config = (Path(path).parent / entry["config"]).resolve()
            if not config.is_file():
                raise FileNotFoundError(f"{path}: the config of method {entry['name']!r} does not exist: {config}")
            methods.append(Method(str(entry["name"]), config))
        names = [m.name for m in methods]
        slugs = [m.slug for m in methods]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"{path}: method names must be distinct (also as folder names), got {names}.")
        seeds = spec.get("seeds", [0, 1, 2])
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
            raise ValueError(f"{path}: `seeds` must be a non-empty list of integers, got {seeds!r}.")
        baseline = spec.get("baseline", names[0])
        if baseline not in names:
            raise ValueError(f"{path}: `baseline` must be one of the method names {names}, got {baseline!r}.")
        args = spec.get("args", []) or []
        if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            raise ValueError(f"{path}: `args` must be a list of strings, got {args!r}.")
        output_dir = Path(spec.get("output_dir", f"outputs/compare/{Path(path).stem}"))
        return cls(methods, seeds, baseline, output_dir, args)
