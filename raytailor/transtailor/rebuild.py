"""Describe a filter-pruned network by its layer widths, and rebuild it from that description.

Pruning changes conv / BN / linear widths, so an export records, per layer, the shape that
matters (conv: out, in; BN: features; linear: out, in). Loading builds the architecture by name
and replaces each recorded layer with one of the recorded width (same kernel, stride, padding),
then loads the weights strictly.
"""

from __future__ import annotations

from torch import nn

from raytailor.backbones import BlockNetwork, create_backbone
from raytailor.errors import ExportError


def layer_widths(network: nn.Module) -> dict[str, list[int]]:
    widths = {}
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            widths[name] = [module.out_channels, module.in_channels]
        elif isinstance(module, nn.BatchNorm2d):
            widths[name] = [module.num_features]
        elif isinstance(module, nn.Linear):
            widths[name] = [module.out_features, module.in_features]
    return widths


def is_depthwise(conv: nn.Conv2d) -> bool:
    """One filter per channel (groups == channels); a dense 1 -> 1 conv is not depthwise."""
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _resized(module: nn.Module, width: list[int]) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        depthwise = is_depthwise(module)
        if module.groups != 1 and not depthwise:
            raise ExportError(f"a conv with groups={module.groups} cannot be rebuilt from its widths")
        return nn.Conv2d(width[1], width[0], module.kernel_size, stride=module.stride,
                         padding=module.padding, dilation=module.dilation,
                         groups=width[0] if depthwise else 1, bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(width[0], eps=module.eps, momentum=module.momentum)
    return nn.Linear(width[1], width[0], bias=module.bias is not None)


def rebuild_pruned(*, arch: str, num_classes: int, widths: dict[str, list[int]]) -> BlockNetwork:
    """An untrained ``arch`` whose layers have the recorded widths (load the weights next)."""
    network = create_backbone(arch, num_classes=num_classes)
    present = layer_widths(network)
    if set(present) != set(widths):
        missing = sorted(set(present) ^ set(widths))[:3]
        raise ExportError(f"the recorded layers do not match a {arch} (e.g. {missing}); was it exported by raytailor?")
    for name, width in widths.items():
        if present[name] == width:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        setattr(parent, child, _resized(parent.get_submodule(child), width))
    return network
