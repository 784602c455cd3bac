"""The configs shipped with the package, and ``lightning-skd configs``: list them, print a path, copy them.

The YAML configs (``fit`` configs and ``compare`` sweep files) are in ``configs/`` at the repository root, and
``lightning_skd/configs`` is a link to that folder: a built package (``pip install .``, a wheel) holds the files
as package data, so an installed package has them too. Paths inside a config (``default_root_dir: outputs/...``,
``data_dir: data/...``) are relative to the working directory, whichever copy is used; a sweep's
``config: ../digits/...`` is relative to the sweep file.

    lightning-skd configs                          # every shipped config, one per line
    lightning-skd configs digits/selfkd.yaml       # its full path, e.g. for `lightning-skd fit --config`
    lightning-skd configs --copy [DIR]             # copy them all into DIR (default: ./configs)
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

#: The folder of the shipped configs: ``configs/`` of a clone, ``lightning_skd/configs/`` of an installed package.
CONFIG_DIR = (Path(__file__).resolve().parents[1] / "configs").resolve()


def shipped_configs() -> list[str]:
    """The names of every shipped config, relative to :data:`CONFIG_DIR` with ``/`` separators, sorted.

    Example:
        >>> "digits/selfkd.yaml" in shipped_configs() and "sweeps/digits.yaml" in shipped_configs()
        True

    """
    return sorted(path.relative_to(CONFIG_DIR).as_posix() for path in CONFIG_DIR.rglob("*.yaml"))


def shipped_config(name: str | os.PathLike[str]) -> Path:
    """The path of the shipped config ``name``, e.g. ``"digits/selfkd.yaml"``.

    ``name`` is relative to :data:`CONFIG_DIR`; a leading ``configs/`` (the path in a clone, as the README writes
    it) is accepted too.

    Example:
        >>> shipped_config("configs/digits/selfkd.yaml") == shipped_config("digits/selfkd.yaml")
        True
        >>> shipped_config("digits/selfkd.yaml").is_file()
        True

    Raises:
        FileNotFoundError: If no shipped config has that name (the message names the closest ones).

    """
    posix = PurePosixPath(Path(name).as_posix())
    parts = posix.parts[1:] if posix.parts[:1] == ("configs",) else posix.parts
    inside = parts and not posix.is_absolute() and ".." not in parts
    path = CONFIG_DIR.joinpath(*parts) if inside else None
    if path is None or not path.is_file():
        relative = "/".join(parts)
        close = difflib.get_close_matches(relative, shipped_configs(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise FileNotFoundError(
            f"`name` must be a config shipped with lightning_skd (a .yaml file under {CONFIG_DIR}), got {str(name)!r}."
            f"{hint} `lightning-skd configs` lists them."
        )
    return path


def copy_configs(destination: str | os.PathLike[str]) -> Path:
    """Copy every shipped config into the new folder ``destination``; returns it.

    Raises:
        FileExistsError: If ``destination`` exists (nothing is overwritten).

    """
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(
            "`destination` must be a folder that does not exist yet (nothing is overwritten), "
            f"got {str(destination)!r}."
        )
    shutil.copytree(CONFIG_DIR, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def main(argv: Sequence[str] | None = None) -> None:
    """``lightning-skd configs [NAME ...] [--copy [DIR]]``."""
    parser = argparse.ArgumentParser(
        prog="lightning-skd configs",
        description="List the configs shipped with lightning_skd, print the paths of some, or copy them all into a "
        "folder. Their output and data paths (outputs/..., data/...) are relative to the working directory.",
        epilog="Example: lightning-skd fit --config $(lightning-skd configs digits/selfkd.yaml)",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="a shipped config, e.g. digits/selfkd.yaml")
    parser.add_argument(
        "--copy",
        nargs="?",
        const="configs",
        metavar="DIR",
        help="copy every shipped config into the new folder DIR (default: configs), e.g. to edit them",
    )
    options = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if options.copy is not None and options.names:
        parser.error("give NAMEs or --copy, not both")
    try:
        if options.copy is not None:
            destination = copy_configs(options.copy)
            print(f"copied {len(shipped_configs())} configs into {destination}")
        elif options.names:
            print("\n".join(str(shipped_config(name)) for name in options.names))
        else:
            print(f"# configs shipped with lightning_skd, in {CONFIG_DIR}")
            print("\n".join(shipped_configs()))
    except (FileNotFoundError, FileExistsError) as err:
        parser.exit(2, f"lightning-skd configs: error: {err}\n")
