"""Sizes of a backbone and of the dense NetTailor student built on it (``raytailor describe``)."""

from __future__ import annotations

import dataclasses

from raytailor.backbones import create_backbone
from raytailor.cost import count_params, image_macs
from raytailor.errors import SpecError
from raytailor.nettailor import NetTailorConfig, PathNetwork, dense_paths
from raytailor.spec import apply_overrides


def describe(*, method: str, arch: str, num_classes: int, image_size: int, overrides: list[str]) -> dict:
    if num_classes < 1:
        raise SpecError(f"--num-classes must be >= 1, got {num_classes}")
    if image_size < 8:
        raise SpecError(f"--image-size must be >= 8, got {image_size}")
    fixed = apply_overrides({"method": method}, overrides).get("fixed", {})
    try:
        config = NetTailorConfig(**fixed)
    except (TypeError, ValueError) as error:
        raise SpecError(f"--set: {error}") from None
    backbone = create_backbone(arch, num_classes=num_classes)
    classifier_macs = backbone.classifier.in_features * backbone.classifier.out_features
    backbone_params = count_params([backbone.stem, backbone.blocks])
    backbone_macs = image_macs(backbone, image_size) - classifier_macs
    student = PathNetwork(backbone, dense_paths(backbone.num_blocks, config.skips), image_size=image_size)
    return {
        "method": method, "backbone": arch, "skips": config.skips,
        "backbone_params": backbone_params,
        "backbone_macs": backbone_macs,
        "proxies": len(student.proxies),
        "task_params": count_params(student.task_modules()),
        "student_params": count_params(student),
        "student_macs": image_macs(student, image_size),
        "hyperparameters": dataclasses.asdict(config),
    }
