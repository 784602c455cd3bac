"""DataModules whose batches are ``(inputs, targets, indices)``, as Self-KD's per-sample cache needs."""

from lightning_skd.data.cifar100 import CIFAR100DataModule
from lightning_skd.data.digits import DigitsDataModule
from lightning_skd.data.fashion_mnist import FashionMNISTDataModule
from lightning_skd.data.image_folder import ImageFolderDataModule
from lightning_skd.data.indexed import IndexedDataset
from lightning_skd.data.parallel_text import ParallelTextDataModule, TranslationInput
from lightning_skd.data.subword import SubwordTokenizer
from lightning_skd.data.synthetic_detection import write_synthetic_classification, write_synthetic_voc
from lightning_skd.data.synthetic_parallel import write_synthetic_parallel_corpus
from lightning_skd.data.text_lm import LMBatch, TextLMDataModule
from lightning_skd.data.token_batching import TokenBatchSampler
from lightning_skd.data.voc_detection import VOC_CLASSES, VOCDetectionDataModule
from lightning_skd.data.vocabulary import Vocabulary

__all__ = [
    "CIFAR100DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "IndexedDataset",
    "LMBatch",
    "ParallelTextDataModule",
    "SubwordTokenizer",
    "TextLMDataModule",
    "TokenBatchSampler",
    "TranslationInput",
    "Vocabulary",
    "VOC_CLASSES",
    "VOCDetectionDataModule",
    "write_synthetic_classification",
    "write_synthetic_parallel_corpus",
    "write_synthetic_voc",
]
