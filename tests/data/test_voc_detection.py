import pytest
import torch

from lightning_skd.data import VOCDetectionDataModule
from tests.helpers.detection import CLASSES, generated_voc


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return generated_voc(tmp_path_factory.mktemp("voc"), trainval=6, test=4)


def _module(data_dir, **kwargs):
    args = {"train_sets": ["2007/trainval"], "test_sets": ["2007/test"], "class_names": CLASSES, **kwargs}
    return VOCDetectionDataModule(str(data_dir), **args)


def test_voc_detection_loads_the_generated_set(voc):
    dm = _module(voc, batch_size=3, flip_prob=0.0)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_dataset) == 6 and len(dm.test_dataset) == 4
    images, targets, indices = next(iter(dm.test_dataloader()))
    assert len(images) == 1 and images[0].shape == (3, 96, 128) and images[0].dtype == torch.float32
    assert indices.tolist() == [0] and indices.dtype == torch.int64
    assert len(targets[0]["boxes"]) == 3  # the first image has max_objects objects
    train = dm.train_dataset
    assert train[1][1]["difficult"][0].item() is True  # the generated difficult object is kept
    record = train.records[0]
    # VOC 1-based inclusive pixels -> continuous: xmin - 1, ymin - 1, xmax, ymax
    text = record.annotation.read_text()
    xmin = int(text.split("<xmin>")[1].split("<")[0])
    assert train[0][1]["boxes"][0, 0].item() == xmin - 1
    assert all(0 <= label < 3 for label in train[0][1]["labels"].tolist())


def test_voc_detection_flip_mirrors_image_and_boxes(voc):
    plain = _module(voc, flip_prob=0.0)
    flipped = _module(voc, flip_prob=1.0)
    plain.setup("fit")
    flipped.setup("fit")
    image, target, _ = plain.train_dataset[0]
    image_f, target_f, _ = flipped.train_dataset[0]
    assert torch.equal(image_f, image.flip(-1))
    width = image.shape[-1]
    assert torch.equal(target_f["boxes"][:, [2, 0]], width - target["boxes"][:, [0, 2]])
    assert torch.equal(target_f["boxes"][:, [1, 3]], target["boxes"][:, [1, 3]])
    assert torch.equal(target_f["labels"], target["labels"])


def test_voc_detection_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="VOC2012"):
        _module(tmp_path, train_sets=["2012/trainval"]).setup("fit")


def _corrupt(voc_root, tmp_path, edit):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(voc_root, copy)
    annotation = copy / "VOCdevkit" / "VOC2007" / "Annotations" / "000002.xml"
    edit(annotation, copy)
    return copy, annotation


def test_voc_detection_malformed_xml_names_the_file(voc, tmp_path):
    root, annotation = _corrupt(voc, tmp_path, lambda a, _: a.write_text("<annotation><filename>"))
    with pytest.raises(ValueError, match=f"malformed VOC annotation '{annotation}'"):
        _module(root).setup("fit")


def test_voc_detection_unknown_class_names_the_file(voc, tmp_path):
    root, annotation = _corrupt(
        voc, tmp_path, lambda a, _: a.write_text(a.read_text().replace("<name>", "<name>zebra", 1))
    )
    with pytest.raises(ValueError, match=f"'{annotation}': unknown class 'zebra"):
        _module(root).setup("fit")


def test_voc_detection_missing_image_names_both_files(voc, tmp_path):
    root, annotation = _corrupt(
        voc, tmp_path, lambda _, c: (c / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000002.jpg").unlink()
    )
    with pytest.raises(FileNotFoundError, match=f"000002.jpg' named by annotation '{annotation}'"):
        _module(root).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_sets": ["trainval"]}, "train_sets"),
        ({"flip_prob": 1.5}, "flip_prob"),
        ({"batch_size": 0}, "batch_size"),
        ({"class_names": ["a", "a"]}, "class_names"),
    ],
)
def test_voc_detection_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _module(tmp_path, **kwargs)
