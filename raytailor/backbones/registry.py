"""Backbone registry and factory: ``create_backbone(arch, num_classes=..., weights=...)``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from raytailor.backbones import cifar
from raytailor.backbones.base import BlockInfo, BlockNetwork
from raytailor.backbones.torchvision_zoo import TORCHVISION_ARCHS
from raytailor.backbones.weights import (
    load_matching,
    read_state_dict,
    resolve_weights_path,
)
from raytailor.cost import count_macs, count_params
from raytailor.errors import BackboneError

_SMALL: dict[str, Callable[[int], BlockNetwork]] = {"resnet20": cifar.resnet20, "wrn26": cifar.wrn26}


def list_backbones() -> list[str]:
    return sorted([*TORCHVISION_ARCHS, *_SMALL])


def create_backbone(
    arch: str, *, num_classes: int, weights: str = "none", base_dir: Path | None = None
) -> BlockNetwork:
    """Build ``arch`` with a fresh ``num_classes``-way classifier and pre-trained features.

    ``weights``: ``imagenet`` (torchvision architectures; downloads through torchvision), ``none``
    (random init), or a file path / ``asset:NAME`` (relative paths resolve against ``base_dir``).
    """
    if arch not in list_backbones():
        raise BackboneError(f"unknown backbone {arch!r}; choose one of {', '.join(list_backbones())}")
    if arch in TORCHVISION_ARCHS:
        return _create_torchvision(arch, num_classes=num_classes, weights=weights, base_dir=base_dir)
    network = _SMALL[arch](num_classes)
    if weights == "imagenet":
        raise BackboneError(f"{arch} has no ImageNet weights; use backbone.weights: PATH or none")
    if weights != "none":
        path = resolve_weights_path(weights, base_dir)
        load_matching(network, read_state_dict(path), source=str(path))
        network.reset_classifier(num_classes)
    return network


def _create_torchvision(arch: str, *, num_classes: int, weights: str, base_dir: Path | None) -> BlockNetwork:
    entry = TORCHVISION_ARCHS[arch]
    if weights == "imagenet":
        try:
            model = entry.build(imagenet=True)
        except OSError as error:  # URLError is an OSError: no network, proxy, disk
            raise BackboneError(
                f"could not download ImageNet weights for {arch} ({error}); fetch "
                f"{entry.weights_url} elsewhere and set backbone.weights to that file"
            ) from None
        network = entry.redescribe(model, arch)
    elif weights == "none":
        network = entry.redescribe(entry.build(), arch)
    else:
        path = resolve_weights_path(weights, base_dir)
        state = read_state_dict(path)
        model = entry.build()
        with torch.device("meta"):  # key names only: no memory, no initialisation
            ours = entry.redescribe(entry.build(), arch)
        if _matching_keys(model, state) > _matching_keys(ours, state):
            load_matching(model, state, source=str(path))  # torchvision's own key names
            network = entry.redescribe(model, arch)
        else:
            network = entry.redescribe(model, arch)
            load_matching(network, state, source=str(path))
    network.reset_classifier(num_classes)
    return network


def _matching_keys(module: nn.Module, state: dict) -> int:
    return len(state.keys() & module.state_dict().keys())


def _stride(before: int, after: int) -> int:
    """The down-sampling from a ``before``-pixel map to an ``after``-pixel one: a padded strided
    conv rounds up (25 -> 13 is stride 2), a max-pool rounds down (5 -> 2 is stride 2)."""
    return next(s for s in range(1, before + 1) if after in (-(-before // s), before // s))


def describe_blocks(network: BlockNetwork, image_size: int) -> list[BlockInfo]:
    """Channels, stride, resolution, params and MACs of every block at ``image_size``."""

    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    with torch.no_grad():
        nodes, _ = network.forward_nodes(torch.zeros(1, 3, image_size, image_size, device=device))
    network.train(was_training)
    infos = []
    for index, block in enumerate(network.blocks, start=1):
        stride = _stride(nodes[index - 1].shape[2], nodes[index].shape[2])
        infos.append(
            BlockInfo(
                index=index,
                in_channels=nodes[index - 1].shape[1],
                out_channels=nodes[index].shape[1],
                stride=stride,
                resolution=nodes[index].shape[2],
                in_resolution=nodes[index - 1].shape[2],
                params=count_params(block),
                macs=count_macs(block, nodes[index - 1]),
                bottleneck_width=network.bottleneck_widths[index - 1],
            )
        )
    return infos
