import hashlib
import pickle
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR100

from lightning_skd.cli import SelfKDCLI
from lightning_skd.data import CIFAR100DataModule

FINE_NAMES = [f"class_{i:02d}" for i in range(100)]


def _write_split(path, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
    labels = [i % 4 for i in range(n)]
    entry = {
        "filenames": [f"img_{i}.png" for i in range(n)],
        "batch_label": "fake",
        "fine_labels": labels,
        "coarse_labels": [0] * n,
        "data": data,
    }
    path.write_bytes(pickle.dumps(entry))
    return data


@pytest.fixture
def cifar_dir(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = _write_split(folder / "train", 20, seed=0)
    test = _write_split(folder / "test", 8, seed=1)
    meta = {"fine_label_names": FINE_NAMES, "coarse_label_names": [f"super_{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return tmp_path, train, test


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_cifar100_loads_fake_folder(cifar_dir):
    root, train, test = cifar_dir
    dm = CIFAR100DataModule(root, verify_checksums=False, batch_size=8, num_workers=0)
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (20, 8, 8)
    assert dm.class_names == FINE_NAMES
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (100, 3, 32)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        x, y, idx = next(iter(loader))
        assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and idx.dtype == torch.int64
    x, y, idx = dm.test_dataset[5]
    expected = torch.from_numpy(test[5].reshape(3, 32, 32)).float() / 255
    mean, std = torch.tensor([0.5071, 0.4865, 0.4409]), torch.tensor([0.2673, 0.2564, 0.2762])
    assert torch.allclose(x, (expected - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    assert (y, idx) == (1, 5)


def test_cifar100_train_transform_pads_crops_and_flips(cifar_dir):
    root, train, _ = cifar_dir
    dm = CIFAR100DataModule(root, verify_checksums=False)
    dm.setup("fit")
    image = Image.fromarray(train[3].reshape(3, 32, 32).transpose(1, 2, 0))
    reference = dm.eval_transform()(image)
    train_transform = dm.train_dataset.transform
    # Every training view is the reference, zero-padded by 4 (zero = -mean/std after normalisation), cropped at an
    # offset in 0..8 and possibly mirrored.
    background = (0 - torch.tensor([0.5071, 0.4865, 0.4409])) / torch.tensor([0.2673, 0.2564, 0.2762])
    padded = background[:, None, None].expand(3, 40, 40).clone()
    padded[:, 4:36, 4:36] = reference
    candidates = [padded[:, r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
    candidates += [view.flip(-1) for view in candidates]
    torch.manual_seed(0)
    views = [train_transform(image) for _ in range(10)]
    for view in views:
        assert view.shape == (3, 32, 32)
        assert any(torch.allclose(view, candidate, atol=1e-5) for candidate in candidates)
    assert any(not torch.allclose(view, reference) for view in views)
    assert any(torch.allclose(view, candidate, atol=1e-5) for view in views for candidate in candidates[81:])


def test_cifar100_val_size_holds_out_stratified_training_images(cifar_dir):
    root = cifar_dir[0]
    dm = CIFAR100DataModule(root, val_size=4, verify_checksums=False, seed=1)
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (16, 4, 8)
    assert sorted(int(dm.val_dataset[i][1]) for i in range(4)) == [0, 1, 2, 3]
    assert dm.val_dataset.transform is not dm.train_dataset.transform
    assert not set(dm.train_dataset.dataset.indices) & set(dm.val_dataset.dataset.indices)


def test_cifar100_verifies_checksums_by_default(cifar_dir, monkeypatch):
    root = cifar_dir[0]
    with pytest.raises(RuntimeError, match="verify_checksums=False"):
        CIFAR100DataModule(root).setup("fit")
    folder = root / "cifar-100-python"
    monkeypatch.setattr(CIFAR100, "train_list", [["train", _md5(folder / "train")]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", _md5(folder / "test")]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": _md5(folder / "meta")})
    dm = CIFAR100DataModule(root)
    dm.setup("fit")
    assert len(dm.train_dataset) == 20


def test_cifar100_missing_data_error_names_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        CIFAR100DataModule(tmp_path / "data").setup("fit")
    message = str(info.value)
    assert str(tmp_path / "data" / "cifar-100-python") in message
    assert "download=True" in message


def test_cifar100_rejects_val_size_not_below_train_size(cifar_dir):
    with pytest.raises(ValueError, match="`val_size`"):
        CIFAR100DataModule(cifar_dir[0], val_size=20, verify_checksums=False).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"val_size": -5}, "val_size"), ({"batch_size": -1}, "batch_size"), ({"seed": 1.5}, "seed")]
)
def test_cifar100_rejects_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        CIFAR100DataModule(tmp_path, **kwargs)


def test_cifar100_builds_from_lightning_cli_yaml(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-skd"])
    config = tmp_path / "config.yaml"
    config.write_text(
        "seed_everything: 0\n"  # explicit: LightningCLI would otherwise seed from the environment or warn
        "model:\n  class_path: pytorch_lightning.demos.boring_classes.BoringModel\n"
        "data:\n  class_path: lightning_skd.data.CIFAR100DataModule\n"
        f"  init_args:\n    data_dir: {tmp_path}\n    val_size: 5000\n    batch_size: 64\n"
        "trainer:\n  logger: false\n"
    )
    dm = SelfKDCLI(args=["--config", str(config)], run=False).datamodule
    assert isinstance(dm, CIFAR100DataModule)
    assert (dm.data_dir, dm.val_size, dm.batch_size) == (tmp_path, 5000, 64)


def test_cifar100_datasets_survive_pickling_for_worker_processes(cifar_dir):
    dm = CIFAR100DataModule(cifar_dir[0], verify_checksums=False)
    dm.setup("fit")
    copy = pickle.loads(pickle.dumps(dm.train_dataset))
    assert copy[3][0].shape == (3, 32, 32) and copy[3][2] == 3
