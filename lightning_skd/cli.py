"""The ``lightning-skd`` command line: Lightning's own ``LightningCLI`` with models and data picked from YAML.

Example:
    ``lightning-skd fit --config configs/digits/selfkd.yaml``

Any ``LightningModule`` / ``LightningDataModule`` importable by class path can be named in a config, so the
classes of this package need no registry and no ``if/elif`` chain.

"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from lightning_skd._lightning import ArgsType, BasePredictionWriter, LightningCLI, LightningDataModule, LightningModule
from lightning_skd.callbacks.prediction_writer import PredictionWriter


class SelfKDCLI(LightningCLI):
    """``LightningCLI`` with subclass mode for both model and data, and config saving that never refuses a rerun.

    ``predict`` writes the predictions of all processes to one file (:class:`~lightning_skd.callbacks.PredictionWriter`,
    ``<log_dir>/predictions.pt``) unless the config names a prediction writer of its own.
    """

    def __init__(self, args: ArgsType = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
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


#: Subcommands that are not LightningCLI's: name -> "module:function" taking the remaining arguments.
EXTRA_COMMANDS = {
    "compare": "lightning_skd.compare:main",
    "export-backbone": "lightning_skd.tools.export_backbone:main",
    "detection-table": "lightning_skd.tools.detection_table:main",
}


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lightning-skd`` console script (``EXTRA_COMMANDS`` first, then LightningCLI)."""
    argv = list(args) if args is not None else sys.argv[1:]
    if argv and argv[0] in EXTRA_COMMANDS:
        module, _, function = EXTRA_COMMANDS[argv[0]].partition(":")
        getattr(importlib.import_module(module), function)(argv[1:])
        return
    SelfKDCLI(args=list(args) if args is not None else None)


if __name__ == "__main__":
    main()
