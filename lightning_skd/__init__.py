"""lightning_skd: self-knowledge distillation for PyTorch Lightning.

What a user needs in their own code is here; modules, DataModules, metrics and the teacher strategies are in their
subpackages (``lightning_skd.models``, ``.data``, ``.metrics``, ``.callbacks.teachers``).

* :class:`SelfKDCallback` -- progressive self-knowledge distillation (Kim et al.), cache or snapshot teacher, and
  :func:`self_kd_loss`, the one call a module's ``training_step`` makes to use it; its alpha schedules.
* :class:`IndexedDataset` -- adds each sample's index to its batch, as cache mode needs.
* :class:`EmbeddingSKDLoss` and :class:`SKDAlphaScheduler` -- SKD for sequence tasks from the output word embeddings
  (Hahn & Choi).
* :class:`CalibrationMetrics` -- ECE (and its over/under-confidence split), adaptive ECE, Brier, AURC, E-AURC, NLL and
  top-k error as one torchmetrics collection, DDP-correct.
* :class:`LightningSKDWarning` -- the category of every warning the library emits.
* ``LIGHTNING_NAMESPACE`` -- the Lightning package the library builds on, ``"pytorch_lightning"`` (the default) or
  ``"lightning.pytorch"``, chosen once, when the library first imports Lightning (see
  ``lightning_skd._lightning`` and docs/namespaces.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lightning_skd._warnings import LightningSKDWarning

if TYPE_CHECKING:
    from lightning_skd.callbacks.alpha_schedules import AlphaSchedule, ConstantAlpha, LinearAlpha, StepAlpha
    from lightning_skd.callbacks.self_kd import SelfKDCallback, self_kd_loss
    from lightning_skd.callbacks.skd_alpha_scheduler import SKDAlphaScheduler
    from lightning_skd.data.indexed import IndexedDataset
    from lightning_skd.losses.embedding_skd import EmbeddingSKDLoss
    from lightning_skd.metrics.collection import CalibrationMetrics

# The names below (and the submodules) are imported on first use, so that what needs none of them starts without
# torch and Lightning: ``lightning-skd --help`` answers in a fraction of a second.
_EXPORTS = {
    "LIGHTNING_NAMESPACE": "lightning_skd._lightning",
    "AlphaSchedule": "lightning_skd.callbacks.alpha_schedules",
    "CalibrationMetrics": "lightning_skd.metrics.collection",
    "ConstantAlpha": "lightning_skd.callbacks.alpha_schedules",
    "EmbeddingSKDLoss": "lightning_skd.losses.embedding_skd",
    "IndexedDataset": "lightning_skd.data.indexed",
    "LinearAlpha": "lightning_skd.callbacks.alpha_schedules",
    "SKDAlphaScheduler": "lightning_skd.callbacks.skd_alpha_scheduler",
    "SelfKDCallback": "lightning_skd.callbacks.self_kd",
    "StepAlpha": "lightning_skd.callbacks.alpha_schedules",
    "self_kd_loss": "lightning_skd.callbacks.self_kd",
}
_SUBMODULES = (
    "callbacks",
    "cli",
    "commands",
    "compare",
    "data",
    "functional",
    "losses",
    "metrics",
    "models",
    "objectives",
    "optim",
    "regularizers",
    "tools",
)

__all__ = [
    "AlphaSchedule",
    "CalibrationMetrics",
    "ConstantAlpha",
    "EmbeddingSKDLoss",
    "IndexedDataset",
    "LIGHTNING_NAMESPACE",
    "LightningSKDWarning",
    "LinearAlpha",
    "SKDAlphaScheduler",
    "SelfKDCallback",
    "StepAlpha",
    "self_kd_loss",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        value = module.NAMESPACE if name == "LIGHTNING_NAMESPACE" else getattr(module, name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
