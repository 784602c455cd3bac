"""The CIFAR model zoo (``"cifar:<name>"`` backbones): forward at 32×32 and parameter counts vs published ones."""

import pytest
import torch
from pytorchcv.models.pyramidnet_cifar import get_pyramidnet_cifar

from lightning_skd.models.backbones import build_backbone
from lightning_skd.models.cifar.pyramidnet import ShakeDropUnit, add_shakedrop


def _resnet_cifar_count(imagenet_count: int, imagenet_stem: int, imagenet_head: int, cifar_stem: int, head: int) -> int:
    """A published ImageNet count with the 7×7 stem and 1000-class head replaced by a 3×3 stem and 100-class head."""
    return imagenet_count - imagenet_stem - imagenet_head + cifar_stem + head


# (name, published parameter count for 100 classes, source)
PUBLISHED = [
    # torchvision's model docs: resnet50 has 25,557,032 parameters; minus the 7×7×3×64 stem and the 2048→1000 head,
    # plus a 3×3×3×64 stem and a 2048→100 head.
    ("resnet50", _resnet_cifar_count(25_557_032, 7 * 7 * 3 * 64, 2048 * 1000 + 1000, 3 * 3 * 3 * 64, 2048 * 100 + 100)),
    # torchvision's model docs: resnet101 has 44,549,160 parameters; same replacement.
    (
        "resnet101",
        _resnet_cifar_count(44_549_160, 7 * 7 * 3 * 64, 2048 * 1000 + 1000, 3 * 3 * 3 * 64, 2048 * 100 + 100),
    ),
    # pytorchcv's preresnet18 (ImageNet, post-activation BN) has 11,687,848 (its model test); the CIFAR variant drops
    # the 7×7 stem and its BN (64·2) and the final BN (512·2), adds a 3×3 stem, and has a 512→100 head.
    (
        "preact_resnet18",
        11_687_848 - 7 * 7 * 3 * 64 - 64 * 2 - 512 * 2 - (512 * 1000 + 1000) + 3 * 3 * 3 * 64 + 512 * 100 + 100,
    ),
    # He et al. 2016 (ResNet), Sec. 4.2 / Table 6: ResNet-20 has 0.27M parameters (10 classes; pytorchcv: 272,474),
    # plus 64 × 90 + 90 for the 100-class head.
    ("resnet20", 272_474 + 64 * 90 + 90),
    # Huang et al. 2017 (DenseNet), Table 2: DenseNet-BC L=100, k=12 has 0.8M parameters (pytorchcv: 800,032).
    ("densenet_bc_100_12", 800_000),
    # Xie et al. 2017 (ResNeXt), Table 7: ResNeXt-29, 8×64d has 34.4M parameters.
    ("resnext29_8x64d", 34_400_000),
    # pytorchcv's model test: pyramidnet200_a240_bn_cifar100 has 26,844,952 parameters.
    ("pyramidnet200_240", 26_844_952),
    # ShakeDrop adds no parameters.
    ("pyramidnet200_240_shakedrop", 26_844_952),
]


# A CPU forward pass of the deepest networks costs tens of seconds on a loaded 2-core machine: ResNet-101 runs the
# same torchvision code as ResNet-50, and PyramidNet-200 the same pytorchcv class as the depth-20 PyramidNet of the
# ShakeDrop tests below, so those two are checked by parameter count only.
COUNT_ONLY = {"resnet101", "pyramidnet200_240", "pyramidnet200_240_shakedrop"}


@pytest.mark.parametrize(("name", "published"), PUBLISHED, ids=[name for name, _ in PUBLISHED])
def test_cifar_backbone_parameter_count_and_forward(name, published):
    torch.manual_seed(0)
    model = build_backbone(f"cifar:{name}", num_classes=100)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - published) / published < 0.01, (count, published)
    if name in COUNT_ONLY:
        return
    with torch.no_grad():
        logits = model.eval()(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 100)
    assert torch.isfinite(logits).all()


def test_cifar_backbone_in_channels_and_classes():
    model = build_backbone("cifar:preact_resnet18", num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_cifar_backbone_rejects_unknown_name_and_pretrained():
    with pytest.raises(ValueError, match="Unknown CIFAR backbone 'resnet7'"):
        build_backbone("cifar:resnet7", num_classes=10)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_backbone("cifar:resnet50", num_classes=10, pretrained=True)


def _small_pyramidnet():
    torch.manual_seed(0)
    return get_pyramidnet_cifar(10, blocks=20, alpha=16, bottleneck=False)


def test_small_pyramidnet_with_shakedrop_trains_and_evaluates_at_32x32():
    net = add_shakedrop(_small_pyramidnet())
    loss = net.train()(torch.randn(2, 3, 32, 32)).logsumexp(dim=-1).sum()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_shakedrop_life_probabilities_decay_linearly_to_p_last():
    units = [m for m in add_shakedrop(_small_pyramidnet(), p_last=0.5).modules() if isinstance(m, ShakeDropUnit)]
    total = len(units)  # depth 20, basic units: 3 stages × 3 units
    assert total == 9
    expected = [1 - (i + 1) / total * 0.5 for i in range(total)]
    assert [u.life_prob for u in units] == pytest.approx(expected)


def test_shakedrop_unit_equals_plain_unit_when_always_alive_and_scales_branch_at_eval():
    net = _small_pyramidnet()
    unit = net.features.stage2.unit1  # downsampling unit: pooled, zero-padded identity
    x = torch.randn(4, unit.body.conv1.conv.in_channels, 8, 8)
    alive = ShakeDropUnit(unit, life_prob=1.0)
    unit.train(), alive.train()
    torch.manual_seed(1)
    expected = unit(x)
    torch.manual_seed(1)
    assert torch.allclose(alive(x), expected, atol=1e-6)  # b = 1: (1 + a - a) F(x) = F(x)
    # eval: F(x) scaled by its expectation p_l
    half = ShakeDropUnit(unit, life_prob=0.25).eval()
    unit.eval()
    branch = unit.bn(unit.body(x))
    identity = torch.nn.functional.pad(unit.identity_pool(x), pad=unit.identity_pad_width)
    assert torch.allclose(half(x), 0.25 * branch + identity, atol=1e-6)


def test_shakedrop_dropped_branch_is_scaled_per_sample():
    unit = _small_pyramidnet().features.stage1.unit1
    dropped = ShakeDropUnit(unit, life_prob=0.0).train()  # b = 0: forward scale a ~ U[-1, 1] per sample
    x = torch.randn(8, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)  # ShakeDrop draws b and a from the global generator
    with torch.no_grad():
        out = dropped(x)
        plain = unit.bn(unit.body(x))  # F(x); train-mode BN uses the batch statistics, as inside `dropped`
    identity = torch.nn.functional.pad(x, pad=unit.identity_pad_width)  # stride 1: zero-padded identity
    # Recover each sample's scale by least squares, a_i = <out_i - id_i, F_i> / |F_i|^2: the denominator is a sum of
    # ~1000 squares of order 1, so unlike an element-wise ratio it never divides by a value near zero.
    dims = (1, 2, 3)
    scale = ((out - identity) * plain).sum(dims) / plain.square().sum(dims)
    # With one a per sample, out = fl(fl(a_i F) + id) equals a_i F + id up to one rounding of each operation (an ulp
    # of max(|F|, |id|) = O(1)), and the recovered a_i is exact to a few eps (a ratio of two sums whose rounding is
    # relative): 16 eps · max(|F|, |id|) bounds the element-wise difference with margin (here ~4e-6 against ~5e-7
    # measured). A per-element or per-channel a would miss by O(|F|); a per-batch a fails the distinctness check.
    expected = scale[:, None, None, None] * plain + identity
    tolerance = 16 * torch.finfo(out.dtype).eps * max(plain.abs().max().item(), identity.abs().max().item())
    assert torch.allclose(out, expected, rtol=0, atol=tolerance), (out - expected).abs().max()
    assert scale.abs().max() <= 1.0 + 1e-5  # a ~ U[-1, 1], recovered to a relative 1e-5
    assert (scale[:, None] - scale[None, :]).abs().add(torch.eye(8)).min() > 1e-4  # a fresh a for each sample
