"""Sizes of a backbone and of what a method trains on it (``raytailor describe``).

NetTailor: the dense student (every proxy of ``skips``). TransTailor: W*, the whole network
(every weight is fine-tuned, so all of it is the task's), and its prunable channel groups."""

from __future__ import annotations

import dataclasses

from raytailor.backbones import create_backbone
from raytailor.cost import count_params, image_macs
from raytailor.errors import SpecError
from raytailor.nettailor import PathNetwork, dense_paths
from raytailor.methods import get_method
from raytailor.spec import apply_overrides


def describe(*, method: str, arch: str, num_classes: int, image_size: int, overrides: list[str]) -> dict:
    if num_classes < 1:
        raise SpecError(f"--num-classes must be >= 1, got {num_classes}")
    if image_size < 8:
        raise SpecError(f"--image-size must be >= 8, got {image_size}")
    fixed = apply_overrides({"method": method}, overrides).get("fixed", {})
    try:
        config = get_method(method).config_type(**fixed)
    except (TypeError, ValueError) as error:
        raise SpecError(f"--set: {error}") from None
    backbone = create_backbone(arch, num_classes=num_classes)
    classifier_macs = backbone.classifier.in_features * backbone.classifier.out_features
    sizes = {"method": method, "backbone": arch,
             # the backbone without its classifier (VGG's head FC layers included)
             "backbone_params": count_params(backbone) - count_params(backbone.classifier),
             "backbone_macs": image_macs(backbone, image_size) - classifier_macs}
    if method == "transtailor":
        return sizes | _transtailor_sizes(backbone, image_size) | {"hyperparameters": dataclasses.asdict(config)}
    student = PathNetwork(backbone, dense_paths(backbone.num_blocks, config.skips), image_size=image_size)
    return {
        **sizes, "skips": config.skips,
        "proxies": len(student.proxies),
        "task_params": count_params(student.task_modules()),
        "student_params": count_params(student),
        "student_macs": image_macs(student, image_size),
        "hyperparameters": dataclasses.asdict(config),
    }


def _transtailor_sizes(network, image_size: int) -> dict:
    """W* and its pruning structure (scaling factors, coupled groups) as TransTailor sees it."""
    from raytailor.transtailor import attach_scales, remove_scales_by_folding
    from raytailor.transtailor.surgery import channel_groups, dependency_graph

    sizes = {"proxies": 0, "task_params": count_params(network), "student_params": count_params(network),
             "student_macs": image_macs(network, image_size)}
    scales = attach_scales(network)
    groups = channel_groups(network, dependency_graph(network, image_size=image_size), scales)
    remove_scales_by_folding(network)
    prunable = [g for g in groups if g.prunable]
    return sizes | {"scaling_factors": sum(s.alpha.numel() for s in scales), "channel_groups": len(prunable),
                    "prunable_channels": sum(g.channels for g in prunable)}
