"""Per-filter scaling factors alpha (paper Eq. 3) placed after every BatchNorm.

A factor sits AFTER its BN (a train-mode BN behind it would undo the scaling and make
dL/dalpha ~ 0) and BEFORE any residual addition, so every filter whose output reaches an
addition has its own factor. Scales live inside the Sequentials as real modules so that
torch-pruning's dependency graph traces them and prunes ``alpha`` together with its channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from raytailor.backbones.base import BlockNetwork
from raytailor.errors import BackboneError


class ChannelScale(nn.Module):
    """``x * alpha`` per channel; x is N x C x H x W, alpha is C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.alpha.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.alpha.numel()}"


def _gated_sequentials(network: BlockNetwork) -> list[nn.Sequential]:
    """Every Sequential that directly holds a BatchNorm2d (stem, residual branches, shortcuts,
    VGG layers, MBConv sub-layers...). A BatchNorm held any other way cannot get a factor
    behind it, so the network is refused with the module's name."""
    sequentials = [m for m in network.modules() if isinstance(m, nn.Sequential)
                   and any(isinstance(child, nn.BatchNorm2d) for child in m.children())]
    held = {id(child) for s in sequentials for child in s.children()}
    stray = [name for name, m in network.named_modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in held]
    if stray:
        raise BackboneError(
            f"TransTailor cannot place scaling factors in {network.arch!r}: BatchNorm {stray[0]} is "
            "not a direct child of an nn.Sequential; describe the backbone with Sequential layers"
        )
    return sequentials


def scales_of(network: nn.Module) -> list[ChannelScale]:
    """The attached scales in module order (the order betas are listed in)."""
    return [m for m in network.modules() if isinstance(m, ChannelScale)]


def attach_scales(network: BlockNetwork) -> list[ChannelScale]:
    """Insert a ChannelScale (alpha = 1) right after every BatchNorm2d; return them in order."""
    if scales_of(network):
        raise BackboneError(
            f"{network.arch!r} already carries ChannelScale modules; fold them with "
            "remove_scales_by_folding before attaching new ones"
        )
    for sequential in _gated_sequentials(network):
        modules: list[nn.Module] = []
        for module in sequential:
            modules.append(module)
            if isinstance(module, nn.BatchNorm2d):
                scale = ChannelScale(module.num_features).to(module.weight.device, module.weight.dtype)
                modules.append(scale)
        _refill(sequential, modules)
    return scales_of(network)


def set_scales(scales: Sequence[ChannelScale], values: Sequence[torch.Tensor], *,
               trainable: bool) -> None:
    """Overwrite every alpha with ``values`` (same lengths) and set whether it is trained."""
    if len(scales) != len(values):
        raise ValueError(f"got {len(values)} value vectors for {len(scales)} scales; pass one per scale")
    with torch.no_grad():
        for scale, value in zip(scales, values):
            if value.numel() != scale.alpha.numel():
                raise ValueError(
                    f"a scale of {scale.alpha.numel()} channels got {value.numel()} values; "
                    "pass the values of the pruned network"
                )
            scale.alpha.copy_(value.reshape(-1).to(scale.alpha))
            scale.alpha.requires_grad_(trainable)


@torch.no_grad()
def remove_scales_by_folding(network: BlockNetwork) -> None:
    """Fold each alpha into the BatchNorm before it (gamma, beta *= alpha) and drop the scale,
    leaving a plain BlockNetwork that computes the same function (exact in eval mode)."""
    for sequential in _gated_sequentials(network):
        modules: list[nn.Module] = []
        for module in sequential:
            if isinstance(module, ChannelScale):
                previous = modules[-1] if modules else None
                if not isinstance(previous, nn.BatchNorm2d) or not previous.affine:
                    raise BackboneError(
                        f"a ChannelScale in {network.arch!r} does not follow an affine "
                        "BatchNorm2d; attach scales only with attach_scales"
                    )
                previous.weight.mul_(module.alpha)
                previous.bias.mul_(module.alpha)
                continue
            modules.append(module)
        _refill(sequential, modules)
    if scales_of(network):
        raise BackboneError(
            f"ChannelScale modules of {network.arch!r} remain outside the gated Sequentials; "
            "attach scales only with attach_scales"
        )


def _refill(sequential: nn.Sequential, modules: list[nn.Module]) -> None:
    """Replace a Sequential's children in place (keeps the object other references hold)."""
    for key in list(sequential._modules):
        del sequential._modules[key]
    for index, module in enumerate(modules):
        sequential.add_module(str(index), module)
