"""lightning_skd: self-knowledge distillation for PyTorch Lightning.

* :class:`SelfKDCallback` -- progressive self-knowledge distillation (Kim et al.), cache or snapshot teacher.
* :func:`self_kd_loss` -- the one call a module's ``training_step`` makes to use it.
* :class:`EmbeddingSKDLoss` -- SKD for sequence tasks from the output word embeddings (Hahn & Choi).
"""

from lightning_skd.callbacks.self_kd import SelfKDCallback, self_kd_loss
from lightning_skd.losses.embedding_skd import EmbeddingSKDLoss

__all__ = ["EmbeddingSKDLoss", "SelfKDCallback", "self_kd_loss"]
__version__ = "0.1.0"
