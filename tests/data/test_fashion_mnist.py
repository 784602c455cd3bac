import gzip
import struct
import sys

import numpy as np
import pytest
import torch

from lightning_skd.cli import SelfKDCLI
from lightning_skd.data import FashionMNISTDataModule
from lightning_skd.data.fashion_mnist import MEAN, STD, read_idx


def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    data = _idx_bytes(array.astype(np.uint8))
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def _fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


@pytest.fixture
def fashion_dir(tmp_path):
    """Train images/test labels gzipped, train labels/test images raw: both readers are exercised."""
    train, test = _fake_split(40, seed=1), _fake_split(20, seed=2)
    _write_idx(tmp_path / "train-images-idx3-ubyte", train[0], compress=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", train[1], compress=False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", test[0], compress=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", test[1], compress=True)
    return tmp_path, train, test


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_reads_raw_and_gzip_files_exactly(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "images-idx3-ubyte", images, compress)
    path = tmp_path / ("images-idx3-ubyte" + (".gz" if compress else ""))
    result = read_idx(path)
    assert result.dtype == np.uint8
    assert np.array_equal(result, images)


def test_read_idx_reads_big_endian_int32(tmp_path):
    values = np.array([[1, -2], [300000, 4]], dtype=">i4")
    path = tmp_path / "ints"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 2) + values.tobytes())
    result = read_idx(path)
    assert result.dtype == np.dtype(np.int32)  # native byte order
    assert result.tolist() == [[1, -2], [300000, 4]]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "bad magic number"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "implies 3"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path, payload, message):
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_fashion_mnist_reads_files_back_exactly(fashion_dir):
    folder, (train_x, train_y), (test_x, test_y) = fashion_dir
    dm = FashionMNISTDataModule(folder, val_size=0, num_workers=0)
    dm.setup("fit")
    assert dm.train_dataset.dataset.indices == list(range(40))  # val_size=0: every training image trains
    stored_x, stored_y = dm.train_dataset.dataset.dataset.tensors
    assert torch.equal(stored_x, torch.from_numpy(train_x).unsqueeze(1))
    assert torch.equal(stored_y, torch.from_numpy(train_y.astype(np.int64)))
    x, y, index = dm.test_dataset[7]
    expected = (torch.from_numpy(test_x[7]).float() / 255 - MEAN) / STD
    assert index == 7 and y.item() == test_y[7]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[0], expected, atol=1e-6)
    assert len(dm.val_dataset) == 20  # val_size=0: the test set validates


def test_fashion_mnist_batches_are_inputs_targets_indices(fashion_dir):
    dm = FashionMNISTDataModule(fashion_dir[0], val_size=10, batch_size=16, num_workers=0, augment=True)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        x, y, idx = next(iter(loader))
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64 and idx.dtype == torch.int64
    indices = torch.cat([idx for _, _, idx in dm.train_dataloader()])
    assert torch.equal(indices.sort().values, torch.arange(30))


def test_fashion_mnist_val_split_is_stratified_and_seeded(fashion_dir):
    folder = fashion_dir[0]
    first, second = (FashionMNISTDataModule(folder, val_size=10, seed=5) for _ in range(2))
    other = FashionMNISTDataModule(folder, val_size=10, seed=6)
    for dm in (first, second, other):
        dm.setup("fit")
    assert first.val_dataset.dataset.indices == second.val_dataset.dataset.indices
    assert first.val_dataset.dataset.indices != other.val_dataset.dataset.indices
    val_labels = [first.val_dataset[i][1].item() for i in range(10)]
    assert sorted(val_labels) == list(range(10))
    assert len(first.train_dataset) == 30
    assert not set(first.train_dataset.dataset.indices) & set(first.val_dataset.dataset.indices)


def test_fashion_mnist_finds_torchvision_download_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    train, test = _fake_split(20, seed=3), _fake_split(10, seed=4)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress=False)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress=False)
    dm = FashionMNISTDataModule(tmp_path, val_size=0)
    dm.setup("test")
    assert len(dm.test_dataset) == 10 and len(dm.train_dataset) == 20


def test_fashion_mnist_missing_folder_error_names_folder_and_files(tmp_path):
    folder = tmp_path / "nowhere"
    dm = FashionMNISTDataModule(folder)
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert str(folder) in message
    expected_files = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    for name in expected_files:
        assert name in message
    assert "apt-get install dataset-fashion-mnist" in message and "download=True" in message


def test_fashion_mnist_rejects_wrong_image_shape(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 8, 8)), compress=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4), compress=False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 8, 8)), compress=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4), compress=False)
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        FashionMNISTDataModule(tmp_path).setup("fit")


def test_fashion_mnist_rejects_val_size_not_below_train_size(fashion_dir):
    with pytest.raises(ValueError, match="`val_size`"):
        FashionMNISTDataModule(fashion_dir[0], val_size=40).setup("fit")


def test_fashion_mnist_train_size_keeps_a_stratified_subset_beside_the_same_val_split(fashion_dir):
    folder = fashion_dir[0]
    full = FashionMNISTDataModule(folder, val_size=10, seed=5)
    subset = FashionMNISTDataModule(folder, val_size=10, train_size=20, seed=5)
    for dm in (full, subset):
        dm.setup("fit")
    assert subset.val_dataset.dataset.indices == full.val_dataset.dataset.indices
    train_indices = subset.train_dataset.dataset.indices
    assert len(train_indices) == 20 and set(train_indices) < set(full.train_dataset.dataset.indices)
    assert sorted(subset.train_dataset[i][1].item() for i in range(20)) == sorted(list(range(10)) * 2)


def test_fashion_mnist_rejects_train_and_val_sizes_covering_the_training_set(fashion_dir):
    with pytest.raises(ValueError, match=r"`val_size` \+ `train_size` must be smaller than the 40 .* got 10 \+ 30"):
        FashionMNISTDataModule(fashion_dir[0], val_size=10, train_size=30).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"val_size": -1}, "val_size"),
        ({"train_size": 0}, "train_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"eval_batch_size": 0}, "eval_batch_size"),
    ],
)
def test_fashion_mnist_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        FashionMNISTDataModule(**kwargs)


def test_fashion_mnist_default_data_dir_is_debian_package_location():
    dm = FashionMNISTDataModule()
    assert str(dm.data_dir) == "/usr/share/datasets/fashion-mnist"
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 28)
    assert dm.class_names[9] == "Ankle boot"


def test_fashion_mnist_builds_from_lightning_cli_yaml(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-skd"])
    config = tmp_path / "config.yaml"
    config.write_text(
        "seed_everything: 0\n"  # explicit: LightningCLI would otherwise seed from the environment or warn
        "model:\n  class_path: pytorch_lightning.demos.boring_classes.BoringModel\n"
        "data:\n  class_path: lightning_skd.data.FashionMNISTDataModule\n"
        f"  init_args:\n    data_dir: {tmp_path}\n    val_size: 1000\n    augment: true\n"
        "trainer:\n  logger: false\n"
    )
    dm = SelfKDCLI(args=["--config", str(config)], run=False).datamodule
    assert isinstance(dm, FashionMNISTDataModule)
    assert (dm.data_dir, dm.val_size, dm.augment) == (tmp_path, 1000, True)
