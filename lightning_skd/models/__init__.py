"""LightningModules for the papers' tasks, and the backbones they build on."""

from lightning_skd.models.backbone_export import export_backbone, load_backbone
from lightning_skd.models.backbones import SmallCNN, build_backbone
from lightning_skd.models.detector import Detector
from lightning_skd.models.image_classifier import ImageClassifier
from lightning_skd.models.language_model import LanguageModel
from lightning_skd.models.translator import Translator

__all__ = [
    "Detector",
    "ImageClassifier",
    "LanguageModel",
    "SmallCNN",
    "Translator",
    "build_backbone",
    "export_backbone",
    "load_backbone",
]
