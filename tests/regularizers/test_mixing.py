import pytest
import torch

from lightning_skd.regularizers import CutMix, MixInfo, MixUp


def test_cutmix_pastes_partner_box_and_lam_is_unreplaced_fraction():
    torch.manual_seed(0)
    images = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 3, 16, 16).contiguous()
    perm = torch.tensor([3, 2, 1, 0])
    for lam in (0.1, 0.5, 0.9):
        mixed, info = CutMix().mix_images(images, perm, lam)
        for i in range(4):
            own = (mixed[i] == images[i]).all(dim=0).float()  # (H, W): pixel kept from the sample itself
            from_partner = (mixed[i] == images[perm[i]]).all(dim=0)
            assert bool((own.bool() | from_partner).all())
            assert info.lam == pytest.approx(float(own.mean()))
            rows, cols = torch.nonzero(~own.bool(), as_tuple=True)
            if len(rows):  # the replaced pixels form one rectangle, the same for every image
                assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert info.perm is perm


def test_mixup_is_convex_combination():
    images = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([1, 2, 0])
    mixed, info = MixUp().mix_images(images, perm, 0.3)
    torch.testing.assert_close(mixed, 0.3 * images + 0.7 * images[perm])
    assert info.lam == 0.3


def test_batch_mix_probability_and_lam_distribution():
    torch.manual_seed(0)
    mixer = MixUp(alpha=1.0, p=0.5)
    images = torch.randn(8, 1, 2, 2)
    infos = [mixer(images)[1] for _ in range(400)]
    mixed = [info for info in infos if info is not None]
    assert 160 < len(mixed) < 240  # Binomial(400, 0.5): mean 200, sd 10
    lams = torch.tensor([info.lam for info in mixed])
    assert 0.4 < float(lams.mean()) < 0.6  # Beta(1, 1) = U(0, 1)
    assert all(sorted(info.perm.tolist()) == list(range(8)) for info in mixed)
    assert MixUp(p=0.0)(images)[1] is None and MixUp(p=1.0)(images)[1] is not None


def test_mix_info_mixes_rows_with_same_pairs():
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    info = MixInfo(perm=torch.tensor([2, 0, 1]), lam=0.25)
    torch.testing.assert_close(info.mix(rows), 0.25 * rows + 0.75 * rows[[2, 0, 1]])
    with pytest.raises(ValueError, match="expected 3 rows"):
        info.mix(torch.zeros(2, 2))


@pytest.mark.parametrize(("kwargs", "match"), [({"alpha": 0}, "`alpha`"), ({"p": 1.5}, "`p`")])
def test_batch_mix_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CutMix(**kwargs)


def test_batch_mix_rejects_non_image_batches():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        CutMix(p=1.0)(torch.zeros(4, 3))
