import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_skd import SelfKDCallback
from lightning_skd.models import ImageClassifier, build_backbone
from tests.helpers.trainer import quiet_trainer


def image_loader(num_samples=24, channels=1, size=8, num_classes=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(num_samples, channels, size, size, generator=generator)
    target = torch.arange(num_samples) % num_classes
    return DataLoader(TensorDataset(images, target, torch.arange(num_samples)), batch_size=8)


def fit_trainer(tmp_path, callbacks=(), **kwargs):
    return quiet_trainer(
        list(callbacks), max_epochs=2, default_root_dir=tmp_path, logger=pl.loggers.CSVLogger(tmp_path), **kwargs
    )


@pytest.mark.parametrize(
    ("spec", "channels", "size"),
    [("timm:resnet10t", 3, 32), ("torchvision:resnet18", 1, 32), ("lightning_skd:small_cnn", 1, 8)],
)
def test_build_backbone_outputs_logits(spec, channels, size):
    torch.manual_seed(0)
    model = build_backbone(spec, num_classes=7, in_channels=channels).eval()
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_build_backbone_cifar_stem_keeps_resolution():
    model = build_backbone("torchvision:resnet18", num_classes=100, cifar_stem=True)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    features = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    assert features(torch.randn(1, 3, 32, 32)).shape[-1] == 32


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("resnet18", {}, "backbone"),
        ("keras:resnet18", {}, "backbone"),
        ("lightning_skd:vgg", {}, "small_cnn"),
        ("lightning_skd:small_cnn", {"cifar_stem": True}, "cifar_stem"),
        ("lightning_skd:small_cnn", {"pretrained": True}, "pretrained"),
    ],
)
def test_build_backbone_rejects_bad_specs(spec, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_backbone(spec, num_classes=10, in_channels=1, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"num_classes": 1}, "num_classes"), ({"label_smoothing": 1.0}, "label_smoothing")]
)
def test_image_classifier_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageClassifier("lightning_skd:small_cnn", in_channels=1, **kwargs)


def test_image_classifier_logs_metrics_and_saves_figures(tmp_path):
    pl.seed_everything(0)
    model = ImageClassifier("lightning_skd:small_cnn", num_classes=10, in_channels=1)
    trainer = fit_trainer(tmp_path, callbacks=[SelfKDCallback()])
    trainer.fit(model, image_loader(), image_loader(seed=1))
    for name in ("skd/alpha", "skd/teacher_acc", "val/ece", "val/aurc", "val/top1_err", "train/loss"):
        assert name in trainer.callback_metrics
    results = trainer.test(model, image_loader(seed=2), verbose=False)[0]
    expected = {"test/loss", "test/top1_err", "test/top5_err", "test/nll", "test/ece", "test/aurc", "test/eaurc"}
    assert expected <= set(results)
    assert all(0.0 <= results[k] <= 1.0 for k in expected - {"test/loss", "test/nll"})
    figures = sorted(p.name for p in (tmp_path / "lightning_logs" / "version_0" / "figures").glob("*.png"))
    assert figures == [
        "test_reliability_diagram.png",
        "test_risk_coverage.png",
        "val_reliability_diagram.png",
        "val_risk_coverage.png",
    ]


@pytest.mark.filterwarnings(
    "ignore:You are trying to `self.log\\(\\)` but the `self.trainer` reference is not registered"
)
def test_image_classifier_label_smoothing_loss():
    torch.manual_seed(0)
    model = ImageClassifier("lightning_skd:small_cnn", num_classes=10, in_channels=1, label_smoothing=0.1)
    images, target, index = next(iter(image_loader()))
    expected = nn.functional.cross_entropy(model(images), target, label_smoothing=0.1)
    torch.testing.assert_close(model.training_step((images, target, index), 0), expected)


def test_image_classifier_refuses_label_smoothing_with_self_kd(tmp_path):
    model = ImageClassifier("lightning_skd:small_cnn", num_classes=10, in_channels=1, label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        fit_trainer(tmp_path, callbacks=[SelfKDCallback()]).fit(model, image_loader())


def test_image_classifier_configures_optimizer_and_scheduler_factories():
    model = ImageClassifier(
        "lightning_skd:small_cnn",
        in_channels=1,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2]),
    )
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.AdamW)
    assert isinstance(config["lr_scheduler"], torch.optim.lr_scheduler.MultiStepLR)
    default = ImageClassifier("lightning_skd:small_cnn", in_channels=1).configure_optimizers()
    assert isinstance(default, torch.optim.SGD) and default.defaults["lr"] == 0.1
