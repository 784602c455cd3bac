"""The ``lightning-skd`` command: its subcommands, their one-line help, and which code runs each.

``fit``, ``validate``, ``test`` and ``predict`` are Lightning's ``LightningCLI`` (:class:`lightning_skd.cli.SelfKDCLI`:
model, data and trainer from YAML configs); the others are this package's tools. Everything heavy is imported only
by the subcommand that runs, so ``lightning-skd --help`` (and an unknown or missing subcommand) answers without
importing torch or Lightning.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

PROG = "lightning-skd"


class Command(NamedTuple):
    """A subcommand: the ``"module:function"`` that runs it (``None``: LightningCLI's) and its one-line help."""

    target: str | None
    summary: str


#: Every subcommand, in the order ``lightning-skd --help`` lists them (summaries fit an 80-column terminal).
COMMANDS = {
    "fit": Command(None, "train the config's model on its data (Trainer.fit)"),
    "validate": Command(None, "evaluate on the validation split (Trainer.validate)"),
    "test": Command(None, "evaluate on the test split (Trainer.test)"),
    "predict": Command(None, "write predictions to <log_dir>/predictions.pt"),
    "compare": Command("lightning_skd.compare:main", "run a sweep of methods x seeds, tabulate vs a baseline"),
    "demo": Command("lightning_skd.tools.demo:main", "baseline, label smoothing, Self-KD on digits (make demo)"),
    "configs": Command("lightning_skd.tools.configs:main", "list, locate or copy the configs shipped with the package"),
    "export-backbone": Command(
        "lightning_skd.tools.export_backbone:main", "write a classifier checkpoint's backbone to safetensors"
    ),
    "detection-table": Command(
        "lightning_skd.tools.detection_table:main", "per-class AP and mAP of detection runs (Markdown, CSV)"
    ),
}

#: Subcommands that are not LightningCLI's: name -> ``"module:function"`` taking the remaining arguments.
EXTRA_COMMANDS = {name: command.target for name, command in COMMANDS.items() if command.target is not None}

_USAGE = f"{PROG} [-h] [--version] [-c CONFIG] [--print_config[=flags]]\n{' ' * 21}SUBCOMMAND ..."
_EPILOG = f"""\
`{PROG} SUBCOMMAND --help` shows the options of a subcommand. fit,
validate, test and predict are Lightning's LightningCLI: a config and dotted
overrides, e.g.

  {PROG} fit --config configs/digits/selfkd.yaml --trainer.max_epochs=5

`{PROG} configs` says where the configs are in an installed package.
"""

_LIGHTNING_VALUE_OPTIONS = ("-c", "--config")  # LightningCLI's options before the subcommand that take a value
_HELP = ("-h", "--help")


def _subcommand_list() -> str:
    """One line per subcommand: its name and its summary."""
    width = max(len(name) for name in COMMANDS)
    return "\n".join(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items())


def _parser() -> argparse.ArgumentParser:
    """The parser that writes the top-level help and errors (the subcommands parse their own arguments)."""
    description = (
        "Self-knowledge distillation (PS-KD, SKD) with PyTorch Lightning: train,\n"
        "evaluate and compare models configured in YAML.\n\n"
        f"subcommands:\n{_subcommand_list()}"
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=_USAGE,
        description=description,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version of lightning_skd and exit")
    parser.add_argument("-c", "--config", help="a config for fit/validate/test/predict, given before the subcommand")
    parser.add_argument(
        "--print_config", nargs="?", metavar="=flags", help="fit/validate/test/predict: print the config, exit"
    )
    return parser


def _fail(message: str) -> NoReturn:
    """Usage, the message and every subcommand with its summary on stderr; exit status 2."""
    parser = _parser()
    parser.print_usage(sys.stderr)
    parser.exit(2, f"{PROG}: error: {message}; the subcommands are:\n{_subcommand_list()}\nSee `{PROG} --help`.\n")


def _first_positional(argv: Sequence[str]) -> str | None:
    """The first argument that is neither an option nor the value of ``-c``/``--config``: the subcommand."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in _LIGHTNING_VALUE_OPTIONS:
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lightning-skd`` console script.

    A subcommand of this package (:data:`EXTRA_COMMANDS`) gets the arguments after its name; ``fit``, ``validate``,
    ``test`` and ``predict`` go to :class:`lightning_skd.cli.SelfKDCLI`. The top-level help, ``--version`` and the
    error for a missing or unknown subcommand are answered here, without importing torch or Lightning.
    """
    argv = list(args) if args is not None else sys.argv[1:]
    if argv and argv[0] in EXTRA_COMMANDS:
        module, _, function = EXTRA_COMMANDS[argv[0]].partition(":")
        getattr(importlib.import_module(module), function)(argv[1:])
        return
    subcommand = _first_positional(argv)
    if subcommand is None:
        if any(token in _HELP for token in argv):
            _parser().print_help()
            raise SystemExit(0)
        if "--version" in argv:
            from lightning_skd import __version__

            print(f"lightning_skd {__version__}")
            raise SystemExit(0)
        if not any(token.split("=")[0] in _LIGHTNING_VALUE_OPTIONS for token in argv):
            _fail("a subcommand is required")
        # no subcommand but a config: LightningCLI reads the subcommand from the config or says it is missing
    elif subcommand not in COMMANDS:
        _fail(f"unknown subcommand {subcommand!r}")
    elif subcommand in EXTRA_COMMANDS:
        _fail(f"{subcommand!r} takes no options before it: `{PROG} {subcommand} [OPTIONS]`")
    from lightning_skd.cli import SelfKDCLI

    SelfKDCLI(args=argv if args is not None else None, parser_kwargs={"prog": PROG})  # also for python -m


_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`(~?)([^`<]+?)(?:\s*<[^`>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<([^`>]+)>`__?")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText markup, for a terminal: literals, cross-reference roles, links.

    Example:
        >>> plain_text("Default: ``'auto'``; see :class:`~lightning_skd.callbacks.SelfKDCallback`.")
        "Default: 'auto'; see SelfKDCallback."
        >>> plain_text(":meth:`Trainer.fit <pytorch_lightning.Trainer.fit>` and `the docs <https://x.org>`_")
        'Trainer.fit and the docs (https://x.org)'

    """
    text = _LINK.sub(r"\1 (\2)", text)
    text = _ROLE.sub(lambda match: match[2].rsplit(".", 1)[-1] if match[1] else match[2], text)
    return _LITERAL.sub(r"\1", text)


if __name__ == "__main__":
    main()
