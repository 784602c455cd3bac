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
  ``"lightning.pytorch"``, chosen once when it is first imported (see :mod:`lightning_skd._lightning` and
  docs/namespaces.md).
"""

from lightning_skd._lightning import NAMESPACE as LIGHTNING_NAMESPACE
from lightning_skd._warnings import LightningSKDWarning
from lightning_skd.callbacks.alpha_schedules import AlphaSchedule, ConstantAlpha, LinearAlpha, StepAlpha
from lightning_skd.callbacks.self_kd import SelfKDCallback, self_kd_loss
from lightning_skd.callbacks.skd_alpha_scheduler import SKDAlphaScheduler
from lightning_skd.data.indexed import IndexedDataset
from lightning_skd.losses.embedding_skd import EmbeddingSKDLoss
from lightning_skd.metrics.collection import CalibrationMetrics

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
