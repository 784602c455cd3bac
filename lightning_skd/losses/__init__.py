"""Loss modules."""

from lightning_skd.losses.embedding_skd import EmbeddingSKDLoss

__all__ = ["EmbeddingSKDLoss"]
