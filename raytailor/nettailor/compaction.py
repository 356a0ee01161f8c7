"""Build a PathNetwork that physically holds only the surviving paths.

One function serves compaction after pruning and loading an export: a fresh architecture is
built by name, reduced to ``paths``, and filled from a state dict (strictly: every tensor of the
new module must come from the source, so nothing is silently left at random init).
"""

from __future__ import annotations

import torch

from raytailor.backbones import create_backbone
from raytailor.nettailor.graph import Path
from raytailor.nettailor.network import PathNetwork


def build_path_network(
    *, arch: str, num_classes: int, paths: list[Path], image_size: int,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> PathNetwork:
    network = PathNetwork(create_backbone(arch, num_classes=num_classes), paths, image_size=image_size)
    if state_dict is not None:
        own = network.state_dict()
        network.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=True)
    return network


def compact(student: PathNetwork, survivors: list[Path]) -> PathNetwork:
    """A new network with only ``survivors``; pruned blocks and proxies are gone, not skipped."""
    device = student.path_costs.device
    network = build_path_network(
        arch=student.arch, num_classes=student.classifier.out_features, paths=survivors,
        image_size=student.image_size, state_dict=student.state_dict(),
    )
    return network.to(device)
