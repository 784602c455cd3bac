import pytest
import torch

from lightning_skd.regularizers import Cutout


def test_cutout_zeroes_one_clipped_square():
    torch.manual_seed(0)
    sizes = set()
    for _ in range(50):
        image = Cutout(size=8)(torch.ones(3, 32, 32))
        holes = image[0] == 0
        assert bool((image == 0).all(dim=0).eq(holes).all())  # same hole in every channel
        rows, cols = torch.nonzero(holes, as_tuple=True)
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(rows) == height * width and height <= 8 and width <= 8
        sizes.add((height, width))
    assert (8, 8) in sizes and len(sizes) > 1  # interior holes are 8×8, border ones clipped


def test_cutout_does_not_modify_its_input():
    image = torch.ones(1, 8, 8)
    Cutout(size=4)(image)
    assert bool((image == 1).all())


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_cutout_rejects_bad_size(size):
    with pytest.raises(ValueError, match="`size` must be an integer > 0"):
        Cutout(size)
