"""The ``lightning-skd`` command line: Lightning's own ``LightningCLI`` with models and data picked from YAML.

Example:
    ``lightning-skd fit --config configs/digits/selfkd.yaml``

Any ``LightningModule`` / ``LightningDataModule`` importable by class path can be named in a config, so the
classes of this package need no registry and no ``if/elif`` chain.

The console script's entry point and the other subcommands (``compare``, ``configs``, ...) are in
:mod:`lightning_skd.commands`, which imports this module only for ``fit``, ``validate``, ``test`` and ``predict``;
``main`` is re-exported here.

"""

from __future__ import annotations

from typing import Any

from jsonargparse import DefaultHelpFormatter

from lightning_skd._lightning import (
    ArgsType,
    BasePredictionWriter,
    LightningArgumentParser,
    LightningCLI,
    LightningDataModule,
    LightningModule,
)
from lightning_skd.callbacks.prediction_writer import PredictionWriter
from lightning_skd.commands import EXTRA_COMMANDS, main, plain_text


class PlainHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter, with the reStructuredText markup of docstrings removed (:func:`plain_text`)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return super()._split_lines(plain_text(text), width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(plain_text(text), width, indent)

    def start_section(self, heading: str | None) -> None:
        """A section of the help; its heading (a class docstring's first line) in plain text."""
        super().start_section(plain_text(heading) if heading else heading)


class PlainHelpParser(LightningArgumentParser):
    """Lightning's argument parser with :class:`PlainHelpFormatter` by default.

    jsonargparse builds the parser of a ``--model.help CLASS`` from the parser's class, so that help is plain too.
    """

    def __init__(self, *args: Any, formatter_class: type = PlainHelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


class SelfKDCLI(LightningCLI):
    """``LightningCLI`` with subclass mode for both model and data, and config saving that never refuses a rerun.

    ``predict`` writes the predictions of all processes to one file (:class:`~lightning_skd.callbacks.PredictionWriter`,
    ``<log_dir>/predictions.pt``) unless the config names a prediction writer of its own.
    """

    def __init__(self, args: ArgsType = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_class", PlainHelpParser)
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )

    def before_predict(self) -> None:
        """Add a :class:`~lightning_skd.callbacks.PredictionWriter` unless the trainer has a prediction writer."""
        if not any(isinstance(callback, BasePredictionWriter) for callback in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter())


__all__ = ["EXTRA_COMMANDS", "PlainHelpFormatter", "PlainHelpParser", "SelfKDCLI", "main"]

if __name__ == "__main__":
    main()
