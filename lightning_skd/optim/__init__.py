"""Learning-rate schedules not in ``torch.optim``."""

from lightning_skd.optim.inverse_sqrt import InverseSquareRootLR

__all__ = ["InverseSquareRootLR"]
