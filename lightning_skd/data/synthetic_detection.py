"""Small generated datasets for detection tests, benchmarks and the transfer demo (no real detection data here).

- :func:`write_synthetic_voc`: a ``VOCdevkit/VOC2007`` tree of noisy images with coloured filled rectangles as
  objects, real VOC XML annotations (``difficult`` flags included) and ``ImageSets/Main`` lists.
- :func:`write_synthetic_classification`: an ImageNet-style ``train/<class>/``, ``val/<class>/`` tree of crops of
  the same kind of rectangles (plus a background class), to pre-train an ``ImageClassifier`` backbone on.

Both are seeded and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

SHAPE_COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.integers(90, 160, size=3)
    noise = rng.normal(0, 18, size=(height, width, 3))
    return np.clip(base + noise, 0, 255)


def _paint(image: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int], colour: Sequence[int]) -> None:
    x1, y1, x2, y2 = box  # 0-based, exclusive end
    jitter = rng.normal(0, 12, size=(y2 - y1, x2 - x1, 3))
    image[y1:y2, x1:x2] = np.clip(np.asarray(colour) + jitter, 0, 255)


def _annotation_xml(filename: str, width: int, height: int, objects: list[tuple[str, tuple, bool]]) -> str:
    parts = [
        "<annotation>",
        "  <folder>VOC2007</folder>",
        f"  <filename>{escape(filename)}</filename>",
        "  <source><database>lightning_skd synthetic</database></source>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for name, (x1, y1, x2, y2), difficult in objects:
        parts += [
            "  <object>",
            f"    <name>{escape(name)}</name>",
            "    <pose>Unspecified</pose>",
            "    <truncated>0</truncated>",
            f"    <difficult>{int(difficult)}</difficult>",
            # VOC: 1-based inclusive pixel indices
            f"    <bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_synthetic_voc(
    root: str | Path,
    splits: dict[str, int] | None = None,
    class_names: Sequence[str] = ("red", "green", "blue"),
    image_size: tuple[int, int] = (96, 128),
    max_objects: int = 3,
    object_size: tuple[int, int] = (18, 44),
    difficult_prob: float = 0.1,
    seed: int = 0,
) -> Path:
    """Write a VOC-layout detection set under ``root/VOCdevkit/VOC2007`` and return that folder.

    Every image holds 1..``max_objects`` filled rectangles (sides in ``object_size``) of the given classes (colours
    of :data:`SHAPE_COLOURS`) on a noisy background. The first image always has ``max_objects`` objects, and the
    first object of the second image of every split is ``difficult`` (others are with ``difficult_prob``).

    Args:
        root: Folder to create ``VOCdevkit/`` in.
        splits: Images per split name, default ``{"trainval": 16, "test": 8}``.
        class_names: Classes, each a key of :data:`SHAPE_COLOURS`.
        image_size: ``(height, width)`` of the images.
        max_objects: Most objects per image.
        object_size: Smallest and largest rectangle side in pixels.
        difficult_prob: Probability that an object is flagged ``difficult``.
        seed: Seed of everything random.

    """
    unknown = [name for name in class_names if name not in SHAPE_COLOURS]
    if unknown:
        raise ValueError(f"write_synthetic_voc: `class_names` must be among {sorted(SHAPE_COLOURS)}, got {unknown}")
    splits = splits or {"trainval": 16, "test": 8}
    rng = np.random.default_rng(seed)
    folder = Path(root) / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    height, width = image_size
    counter = 0
    for split, count in splits.items():
        ids = []
        for i in range(count):
            image_id = f"{counter:06d}"
            counter += 1
            image = _background(rng, height, width)
            n_objects = max_objects if i == 0 else int(rng.integers(1, max_objects + 1))
            objects = []
            for k in range(n_objects):
                side_w, side_h = (int(s) for s in rng.integers(object_size[0], object_size[1] + 1, size=2))
                x1, y1 = int(rng.integers(0, width - side_w + 1)), int(rng.integers(0, height - side_h + 1))
                name = class_names[int(rng.integers(len(class_names)))]
                difficult = (i == 1 and k == 0) or bool(rng.random() < difficult_prob)
                box = (x1, y1, x1 + side_w, y1 + side_h)
                _paint(image, rng, box, SHAPE_COLOURS[name])
                objects.append((name, box, difficult))
            Image.fromarray(image.astype(np.uint8)).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=95)
            (folder / "Annotations" / f"{image_id}.xml").write_text(
                _annotation_xml(f"{image_id}.jpg", width, height, objects)
            )
            ids.append(image_id)
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return folder


def write_synthetic_classification(
    root: str | Path,
    class_names: Sequence[str] = ("red", "green", "blue", "yellow"),
    per_class: dict[str, int] | None = None,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """Write ``root/{train,val}/<class>/*.png`` crops: a rectangle of the class colour, or none (``background``).

    Rectangles cover 30–100 % of each side at a random place on a noisy background, so that the classifier has to
    find the coloured region, which is the skill the detection set rewards.

    Args:
        root: Folder to create.
        class_names: Object classes (keys of :data:`SHAPE_COLOURS`); a ``background`` class is added.
        per_class: Images per class and split, default ``{"train": 60, "val": 20}``.
        image_size: Side of the square images.
        seed: Seed of everything random.

    """
    per_class = per_class or {"train": 60, "val": 20}
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in per_class.items():
        for name in (*class_names, "background"):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = _background(rng, image_size, image_size)
                if name != "background":
                    w, h = (int(s) for s in rng.integers(int(0.3 * image_size), image_size + 1, size=2))
                    x1, y1 = int(rng.integers(0, image_size - w + 1)), int(rng.integers(0, image_size - h + 1))
                    _paint(image, rng, (x1, y1, x1 + w, y1 + h), SHAPE_COLOURS[name])
                Image.fromarray(image.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root
