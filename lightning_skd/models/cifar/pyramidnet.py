"""PyramidNet-200 (α = 240, bottleneck) for CIFAR (Han et al. 2017), optionally with ShakeDrop (Yamada et al. 2019).

The network is ``pytorchcv``'s ``pyramidnet200_a240_bn``. ShakeDrop is not in any library for PyramidNet, so
:class:`ShakeDropUnit` wraps each pytorchcv unit: its residual branch ``F(x)`` (after the unit's last BN) is scaled
by ``b_l + α - b_l α`` in the forward pass and ``b_l + β - b_l β`` in the backward pass during training (``b_l ~
Bernoulli(p_l)`` per batch, ``α ~ U[-1, 1]``, ``β ~ U[0, 1]`` per sample; pytorchcv's ``ShakeDrop`` function), and by
its expectation ``p_l`` at test time. ``p_l = 1 - l / L · (1 - P_L)`` decays linearly over the ``L`` units with
``P_L = 0.5`` (Kim et al., appendix B.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ShakeDropUnit(nn.Module):
    """A pytorchcv PyramidNet unit (``PyrUnit``) whose residual branch goes through ShakeDrop.

    Args:
        unit: The unit to wrap (its ``body``, ``bn``, zero-padded identity and optional ``identity_pool`` are used).
        life_prob: ``p_l``, the probability that the branch is kept un-perturbed.

    """

    def __init__(self, unit: nn.Module, life_prob: float) -> None:
        super().__init__()
        if not 0.0 <= life_prob <= 1.0:
            raise ValueError(f"`life_prob` must lie in [0, 1], got {life_prob!r}.")
        self.unit = unit
        self.life_prob = life_prob

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)
        """Unit output with the ShakeDrop-scaled residual branch."""
        from pytorchcv.models.shakedropresnet_cifar import ShakeDrop

        unit = self.unit
        branch = unit.bn(unit.body(x))
        if self.training:
            b = torch.bernoulli(torch.full((1,), self.life_prob, dtype=branch.dtype, device=branch.device))
            alpha = torch.empty(len(branch), 1, 1, 1, dtype=branch.dtype, device=branch.device).uniform_(-1.0, 1.0)
            branch = ShakeDrop.apply(branch, b, alpha)
        else:
            branch = self.life_prob * branch
        identity = unit.identity_pool(x) if unit.resize_identity else x
        return branch + F.pad(identity, pad=unit.identity_pad_width)


def pyramidnet200_240(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """PyramidNet-200 with widening factor α = 240 and bottleneck units (about 26.8M parameters on CIFAR-100)."""
    from pytorchcv.models.pyramidnet_cifar import get_pyramidnet_cifar

    return get_pyramidnet_cifar(num_classes, blocks=200, alpha=240, bottleneck=True, in_channels=in_channels)


def add_shakedrop(model: nn.Module, p_last: float = 0.5) -> nn.Module:
    """Wrap every unit of a pytorchcv PyramidNet in :class:`ShakeDropUnit`, ``p_l`` decaying linearly to ``p_last``.

    Example:
        >>> from pytorchcv.models.pyramidnet_cifar import get_pyramidnet_cifar
        >>> net = add_shakedrop(get_pyramidnet_cifar(10, blocks=110, alpha=48, bottleneck=False))
        >>> units = [m for m in net.modules() if isinstance(m, ShakeDropUnit)]
        >>> len(units), round(units[0].life_prob, 4), units[-1].life_prob
        (54, 0.9907, 0.5)

    """
    if not 0.0 <= p_last <= 1.0:
        raise ValueError(f"`p_last` (P_L) must lie in [0, 1], got {p_last!r}.")
    stages = [module for name, module in model.features.named_children() if name.startswith("stage")]
    total = sum(len(stage) for stage in stages)
    position = 0
    for stage in stages:
        for name, unit in list(stage.named_children()):
            position += 1
            setattr(stage, name, ShakeDropUnit(unit, life_prob=1.0 - position / total * (1.0 - p_last)))
    return model


def pyramidnet200_240_shakedrop(num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """:func:`pyramidnet200_240` with ShakeDrop (``P_L = 0.5``, linear decay), the "+ SD" rows of Kim et al. Table 1.

    ShakeDrop adds no parameters.
    """
    return add_shakedrop(pyramidnet200_240(num_classes, in_channels), p_last=0.5)
