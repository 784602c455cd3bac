import pytest
import torch
from safetensors import safe_open

from lightning_skd.cli import main
from lightning_skd.models import ImageClassifier, export_backbone, load_backbone
from lightning_skd.models.backbone_export import read_backbone_info
from tests.helpers.detection import classifier_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return classifier_checkpoint(tmp_path_factory.mktemp("export") / "classifier.ckpt")


def test_export_backbone_round_trip_gives_identical_features(checkpoint, tmp_path):
    output = tmp_path / "out" / "backbone.safetensors"
    main(["export-backbone", str(checkpoint), str(output)])  # through the CLI subcommand
    classifier = ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    loaded, info = load_backbone(output)
    loaded.eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = classifier.net.forward_features(images)
        actual = loaded.forward_features(images)
    assert torch.equal(actual, expected)
    original = {k: v for k, v in classifier.net.state_dict().items() if not k.startswith("fc.")}
    restored = loaded.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in original.items())
    assert info.architecture == "timm:resnet10t"
    assert info.method == "baseline"
    assert info.source_checkpoint == str(checkpoint.resolve())
    assert len(info.source_sha256) == 64 and info.source_global_step == 1
    with safe_open(str(output), framework="pt") as handle:  # plain tensors, no head
        assert handle.metadata()["architecture"] == '"timm:resnet10t"'
        assert not [k for k in handle.keys() if k.startswith("fc.")]


def test_export_backbone_records_the_training_method(tmp_path):
    checkpoint = classifier_checkpoint(tmp_path / "ls.ckpt", backbone="torchvision:resnet18", label_smoothing=0.1)
    info = export_backbone(checkpoint, tmp_path / "ls.safetensors")
    assert (info.architecture, info.method) == ("torchvision:resnet18", "label_smoothing")
    assert read_backbone_info(tmp_path / "ls.safetensors") == info
    checkpoint = classifier_checkpoint(tmp_path / "skd.ckpt", self_kd=True)
    assert export_backbone(checkpoint, tmp_path / "skd.safetensors").method == "selfkd"


def test_load_backbone_refuses_another_architecture(checkpoint, tmp_path):
    output = tmp_path / "backbone.safetensors"
    export_backbone(checkpoint, output)
    with pytest.raises(ValueError, match="holds a 'timm:resnet10t' backbone, but 'timm:resnet50' was asked for"):
        load_backbone(output, architecture="timm:resnet50")


def test_export_backbone_refuses_a_non_resnet(tmp_path):
    checkpoint = classifier_checkpoint(tmp_path / "cnn.ckpt", backbone="lightning_skd:small_cnn")
    with pytest.raises(ValueError, match="not a timm / torchvision ResNet"):
        export_backbone(checkpoint, tmp_path / "cnn.safetensors")
    checkpoint = classifier_checkpoint(tmp_path / "mobilenet.ckpt", backbone="timm:mobilenetv3_small_050")
    with pytest.raises(ValueError, match="not a ResNet-family network"):
        export_backbone(checkpoint, tmp_path / "mobilenet.safetensors")


def test_export_backbone_errors_name_the_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["export-backbone", str(tmp_path / "missing.ckpt"), str(tmp_path / "out.safetensors")])
    assert "missing.ckpt" in capsys.readouterr().err
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="other.ckpt.*is not an ImageClassifier checkpoint"):
        export_backbone(tmp_path / "other.ckpt", tmp_path / "out.safetensors")
    with pytest.raises(FileNotFoundError, match="no backbone file"):
        load_backbone(tmp_path / "nothing.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="foreign.safetensors.*not a backbone file"):
        load_backbone(tmp_path / "foreign.safetensors")
