"""Per-channel statistics of uint8 images, used to normalise inputs."""

from __future__ import annotations

import math

import torch

_CHUNK = 4096  # images per step: bounds the float64 temporary


def channel_mean_std(
    images: torch.Tensor,
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Mean and (population) std per channel of uint8 N x 3 x S x S images scaled to [0, 1]."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].to(torch.float64).div_(255.0)  # n x 3 x S x S
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(count, 1)
    var = (total_sq / max(count, 1) - mean.square()).clamp_min(0.0)
    # A constant channel has std 0; 1.0 keeps normalisation finite (it only shifts the channel).
    std = [math.sqrt(v) if v > 1e-12 else 1.0 for v in var.tolist()]
    m = mean.tolist()
    return (m[0], m[1], m[2]), (std[0], std[1], std[2])
