"""An image classifier for the PS-KD experiments: baseline, label smoothing and Self-KD share one module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import MeanMetric

from lightning_skd._lightning import LRSchedulerCallable, OptimizerCallable, pl, warn_if_mixed
from lightning_skd.functional.soft_targets import hard_target_cross_entropy
from lightning_skd.metrics import CalibrationMetrics
from lightning_skd.models.backbones import build_backbone
from lightning_skd.models.evaluation_logging import log_evaluation
from lightning_skd.models.temperature_scaled_metrics import TemperatureScaledMetrics
from lightning_skd.objectives import objective_from_hparams
from lightning_skd.regularizers.mixing import BatchMix


class ImageClassifier(pl.LightningModule):
    """Classifier over a timm / torchvision / built-in backbone, with the papers' metrics.

    The training loss is :func:`~lightning_skd.self_kd_loss`: Self-KD when a
    :class:`~lightning_skd.SelfKDCallback` is attached, plain cross-entropy otherwise, and label-smoothed
    cross-entropy with ``label_smoothing > 0`` (the paper's LS baseline; not combinable with the callback).
    Validation and test log loss, ``top1_err``, ``top5_err``, ``nll``, ``ece``, ``aurc`` and ``eaurc`` under
    ``val/`` and ``test/`` (fractions), plus a reliability diagram and a risk-coverage curve at the end of each
    validation / test epoch: sent to the logger when it takes figures (TensorBoard), saved as PNG under
    ``<log_dir>/figures/`` otherwise.

    Temperature scaling (:class:`~lightning_skd.callbacks.TemperatureScaling`): while ``temperature`` is a number
    (the callback sets it for the test, fitted on :meth:`evaluation_logits` of the validation split), the test also
    reports the same values of ``logits / temperature`` under ``test_ts/`` (and their figures), the ``test/`` values
    unchanged.

    Batches are ``(images, targets, indices)`` as produced by the DataModules of :mod:`lightning_skd.data`.

    Args:
        backbone: ``"timm:<name>"``, ``"torchvision:<name>"`` or ``"lightning_skd:small_cnn"``.
        num_classes: Output classes.
        in_channels: Image channels.
        cifar_stem: 3×3 stride-1 stem without max-pool for 32×32 inputs (ResNet-style backbones).
        pretrained: Download pretrained backbone weights (needs network access).
        label_smoothing: Smoothing of the hard targets (the paper uses 0.1 for its LS baseline).
        batch_mix: A batch mixer (:class:`~lightning_skd.regularizers.CutMix` or
            :class:`~lightning_skd.regularizers.MixUp`, from YAML by ``class_path``) applied to the training images;
            the targets (hard, label-smoothed or Self-KD) of a mixed batch are mixed with the same pairs and weight.
        optimizer: Optimizer factory, from YAML as ``class_path``/``init_args``; default SGD(lr=0.1, momentum=0.9,
            weight_decay=5e-4, nesterov=False), the paper's CIFAR-100 setting.
        lr_scheduler: LR scheduler factory (e.g. ``MultiStepLR`` with milestones [150, 225]); stepped every epoch.
        n_bins: Bins of the ECE and the reliability diagram.
        log_figures: Produce the reliability diagram and risk-coverage curve.

    """

    def __init__(
        self,
        backbone: str = "timm:resnet18",
        num_classes: int = 10,
        in_channels: int = 3,
        cifar_stem: bool = False,
        pretrained: bool = False,
        label_smoothing: float = 0.0,
        batch_mix: BatchMix | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        n_bins: int = 15,
        log_figures: bool = True,
    ) -> None:
        super().__init__()
        warn_if_mixed(type(self).__name__)
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
        if not (isinstance(in_channels, int) and in_channels >= 1):
            raise ValueError(f"`in_channels` must be a positive integer, got {in_channels!r}.")
        if batch_mix is not None and not isinstance(batch_mix, BatchMix):
            raise ValueError(
                f"`batch_mix` must be a lightning_skd.regularizers.BatchMix (CutMix, MixUp) or None, got {batch_mix!r}."
            )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "batch_mix"])
        # Cross-entropy through self_kd_loss (Self-KD with a SelfKDCallback) or label smoothing; checked here.
        self.training_objective = objective_from_hparams(self)
        self.batch_mix = batch_mix
        self.net = build_backbone(backbone, num_classes, in_channels, pretrained=pretrained, cifar_stem=cifar_stem)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.label_smoothing = label_smoothing
        self.log_figures = log_figures
        self.val_metrics = CalibrationMetrics(num_classes, n_bins=n_bins, prefix="val/")
        self.test_metrics = CalibrationMetrics(num_classes, n_bins=n_bins, prefix="test/")
        # Sample-weighted mean losses as metrics (sum states): exact under DDP even when the ranks hold different
        # numbers of samples, where Lightning's own `sync_dist` mean truncates the summed batch size to an integer.
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        #: ``T`` of the ``test_ts/`` metrics (set by TemperatureScaling for a test); ``None``: no scaled metrics.
        self.temperature: float | None = None
        self.test_ts_metrics = TemperatureScaledMetrics(self.test_metrics)

    def forward(self, images: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        """Logits of a batch of images."""
        return self.net(images)

    def setup(self, stage: str) -> None:
        """Check the objective against the callbacks: label smoothing refuses Self-KD (both rewrite the targets)."""
        if stage == "fit":
            self.training_objective.check_callbacks(self.trainer.callbacks)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        """Self-KD / cross-entropy / label-smoothing loss of a batch, after CutMix / Mixup if configured."""
        images, target, _ = batch
        mix = None
        if self.batch_mix is not None:
            images, mix = self.batch_mix(images)  # mix: None when this batch is left un-mixed
        logits = self(images)
        loss = self.training_objective.loss(self, logits, target, mix=mix)  # targets mixed with the images' pairs
        # Epoch means over all processes (batch-size weighted); synchronised once, at the end of the epoch.
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(target), sync_dist=True
        )
        top1_err = (logits.argmax(dim=-1) != target).float().mean()
        self.log("train/top1_err", top1_err, on_step=False, on_epoch=True, batch_size=len(target), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        """Accumulate validation metrics."""
        self._evaluation_step(batch, self.val_metrics, self.val_loss)

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        """Accumulate test metrics (and those of ``logits / temperature`` if ``temperature`` is set)."""
        logits, target = self._evaluation_step(batch, self.test_metrics, self.test_loss)
        if self.temperature is not None:
            self.test_ts_metrics.update(logits, target, self.temperature)

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Probabilities ``(B, C)``, targets and sample indices."""
        images, target, index = batch
        return {"probs": self(images).softmax(dim=-1), "target": target, "index": index}

    def on_validation_epoch_end(self) -> None:
        """Log and reset the validation metrics."""
        self._log_metrics(self.val_metrics, self.val_loss, "val")

    def on_test_epoch_end(self) -> None:
        """Log and reset the test metrics (and the ``test_ts/`` ones if ``temperature`` is set)."""
        self._log_metrics(self.test_metrics, self.test_loss, "test")
        if self.temperature is not None:
            self._log_metrics(self.test_ts_metrics.calibration, self.test_ts_metrics.loss, "test_ts")

    def evaluation_logits(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Logits ``(B, C)`` and targets ``(B,)`` of an evaluation batch: what the val / test metrics are made of."""
        images, target, _ = batch
        return self(images), target

    def configure_optimizers(self) -> Any:
        """The configured optimizer (default: the paper's SGD) and optional epoch-wise LR scheduler."""
        if self.optimizer_factory is None:
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        else:
            optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}

    def _evaluation_step(
        self, batch: tuple[Tensor, Tensor, Tensor], metrics: CalibrationMetrics, loss: MeanMetric
    ) -> tuple[Tensor, Tensor]:
        logits, target = self.evaluation_logits(batch)
        loss.update(hard_target_cross_entropy(logits, target), weight=len(target))
        metrics.update(logits.float().softmax(dim=-1), target)
        return logits, target

    def _log_metrics(self, metrics: CalibrationMetrics, loss: MeanMetric, stage: str) -> None:
        values = {f"{stage}/loss": loss.compute(), **metrics.compute()}
        if self.log_figures and not self.trainer.sanity_checking:
            self._emit_figures(metrics.plot_figures(), stage)  # plot_figures syncs states: called on every rank
        log_evaluation(self, values, prog_bar={f"{stage}/loss", f"{stage}/top1_err"}, reset=(metrics, loss))

    def _emit_figures(self, figures: dict[str, Figure], stage: str) -> None:
        """Send the figures to the logger (if it takes figures) or save them as PNG, once, from rank 0.

        ``trainer.log_dir`` broadcasts under DDP, so it is resolved on every rank, unconditionally (whether the logger
        takes figures cannot be asked on other ranks: their ``logger.experiment`` is a dummy), before rank 0 writes.
        """
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "figures"
        if not self.trainer.is_global_zero:
            return
        experiment = getattr(self.logger, "experiment", None) if self.logger is not None else None
        if experiment is not None and hasattr(experiment, "add_figure"):
            for name, figure in figures.items():
                experiment.add_figure(f"{stage}/{name}", figure, global_step=self.global_step)
            return
        folder.mkdir(parents=True, exist_ok=True)
        for name, figure in figures.items():
            figure.savefig(folder / f"{stage}_{name}.png", dpi=100, bbox_inches="tight")
