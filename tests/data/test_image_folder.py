import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_skd.cli import SelfKDCLI
from lightning_skd.data import ImageFolderDataModule

CLASSES = ["cat", "dog", "fish"]


def _write_image(path, seed: int, size=(30, 20)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def imagenet_dir(tmp_path):
    """train/: 2 images per class (one PNG, one JPEG); val/: 1 JPEG per class."""
    for c, name in enumerate(CLASSES):
        (tmp_path / "train" / name).mkdir(parents=True)
        (tmp_path / "val" / name).mkdir(parents=True)
        _write_image(tmp_path / "train" / name / "a.png", seed=10 * c)
        _write_image(tmp_path / "train" / name / "b.JPEG", seed=10 * c + 1, size=(17, 25))
        _write_image(tmp_path / "val" / name / "v.JPEG", seed=10 * c + 2)
    return tmp_path


def test_image_folder_shapes_and_batches(imagenet_dir):
    dm = ImageFolderDataModule(imagenet_dir, image_size=16, batch_size=4, num_workers=0)
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (6, 3, 3)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        x, y, idx = next(iter(loader))
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16)
        assert y.dtype == torch.int64 and idx.dtype == torch.int64
    assert dm.input_shape == (3, 16, 16)


def test_image_folder_class_mapping_follows_sorted_folders(imagenet_dir):
    dm = ImageFolderDataModule(imagenet_dir, image_size=8)
    assert dm.class_names == CLASSES and dm.num_classes == 3  # readable before setup
    dm.setup("fit")
    train_targets = [dm.train_dataset[i][1] for i in range(6)]
    assert train_targets == [0, 0, 1, 1, 2, 2]
    assert [dm.val_dataset[i][1] for i in range(3)] == [0, 1, 2]


def test_image_folder_indices_index_the_dataset(imagenet_dir):
    dm = ImageFolderDataModule(imagenet_dir, image_size=8, batch_size=6, num_workers=0)
    dm.setup("fit")
    torch.manual_seed(0)
    x, y, idx = next(iter(dm.train_dataloader()))
    assert sorted(idx.tolist()) == list(range(6))
    for row, i in enumerate(idx.tolist()):
        assert y[row].item() == dm.train_dataset.dataset.targets[i]
    x, y, idx = next(iter(dm.val_dataloader()))
    assert idx.tolist() == [0, 1, 2]
    for row in range(3):
        assert torch.equal(x[row], dm.val_dataset[row][0])  # evaluation transform is deterministic


def test_image_folder_eval_transform_resizes_then_centre_crops(imagenet_dir):
    dm = ImageFolderDataModule(imagenet_dir, image_size=224)
    transform = dm.eval_transform()
    resize = transform.transforms[0]
    assert resize.size == [256] or resize.size == 256
    image = Image.new("RGB", (300, 260))
    assert transform(image).shape == (3, 224, 224)


def test_image_folder_color_jitter_is_optional(imagenet_dir):
    names = [type(t).__name__ for t in ImageFolderDataModule(imagenet_dir).train_transform().transforms]
    assert "ColorJitter" not in names and names[:2] == ["RandomResizedCrop", "RandomHorizontalFlip"]
    jittered = ImageFolderDataModule(imagenet_dir, color_jitter=0.4).train_transform()
    names = [type(t).__name__ for t in jittered.transforms]
    assert "ColorJitter" in names


def test_image_folder_val_subset_of_classes_keeps_training_labels(imagenet_dir):
    for name in ("cat", "fish"):
        (imagenet_dir / "val" / name / "v.JPEG").unlink()
        (imagenet_dir / "val" / name).rmdir()
    dm = ImageFolderDataModule(imagenet_dir, image_size=8)
    dm.setup("fit")
    assert len(dm.val_dataset) == 1
    assert dm.val_dataset[0][1] == 1  # "dog" is label 1 in train/


def test_image_folder_rejects_val_class_absent_from_train(imagenet_dir):
    (imagenet_dir / "val" / "zebra").mkdir()
    _write_image(imagenet_dir / "val" / "zebra" / "z.png", seed=99)
    with pytest.raises(ValueError, match="zebra"):
        ImageFolderDataModule(imagenet_dir, image_size=8).setup("fit")


def test_image_folder_missing_folders_error_names_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        ImageFolderDataModule(tmp_path / "imagenet").setup("fit")
    message = str(info.value)
    assert str(tmp_path / "imagenet" / "train") in message and "<class>" in message
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no class folder"):
        _ = ImageFolderDataModule(tmp_path / "imagenet").num_classes


def test_image_folder_missing_val_folder_error(imagenet_dir):
    for path in sorted((imagenet_dir / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (imagenet_dir / "val").rmdir()
    with pytest.raises(FileNotFoundError, match="val"):
        ImageFolderDataModule(imagenet_dir, image_size=8).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"image_size": 0}, "image_size"), ({"color_jitter": -0.1}, "color_jitter"), ({"batch_size": 0}, "batch_size")],
)
def test_image_folder_rejects_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ImageFolderDataModule(tmp_path, **kwargs)


def test_image_folder_builds_from_lightning_cli_yaml(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-skd"])
    config = tmp_path / "config.yaml"
    config.write_text(
        "seed_everything: 0\n"  # explicit: LightningCLI would otherwise seed from the environment or warn
        "model:\n  class_path: pytorch_lightning.demos.boring_classes.BoringModel\n"
        "data:\n  class_path: lightning_skd.data.ImageFolderDataModule\n"
        f"  init_args:\n    data_dir: {tmp_path}\n    image_size: 160\n    color_jitter: 0.4\n"
        "trainer:\n  logger: false\n"
    )
    dm = SelfKDCLI(args=["--config", str(config)], run=False).datamodule
    assert isinstance(dm, ImageFolderDataModule)
    assert (dm.image_size, dm.color_jitter) == (160, 0.4)


def test_image_folder_datasets_survive_pickling_for_worker_processes(imagenet_dir):
    dm = ImageFolderDataModule(imagenet_dir, image_size=8, color_jitter=0.2)
    dm.setup("fit")
    copy = pickle.loads(pickle.dumps(dm.train_dataset))
    assert copy[0][0].shape == (3, 8, 8) and copy[0][2] == 0
