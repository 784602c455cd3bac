"""Regularisers that combine with Self-KD: Cutout (per image), CutMix and Mixup (per batch, with :class:`MixInfo`).

Label smoothing is ``ImageClassifier(label_smoothing=...)``.
"""

from lightning_skd.regularizers.cutout import Cutout
from lightning_skd.regularizers.mixing import BatchMix, CutMix, MixInfo, MixUp

__all__ = ["BatchMix", "CutMix", "Cutout", "MixInfo", "MixUp"]
