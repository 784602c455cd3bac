"""LightningModules for the papers' tasks, and the backbones they build on."""

from lightning_skd.models.backbones import SmallCNN, build_backbone
from lightning_skd.models.image_classifier import ImageClassifier
from lightning_skd.models.language_model import LanguageModel

__all__ = ["ImageClassifier", "LanguageModel", "SmallCNN", "build_backbone"]
