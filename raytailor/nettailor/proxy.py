"""Proxy layers A_lp: cheap task-specific paths from node p to node l (paper Sec. 3.3).

A proxy is max-pooling to node l's resolution followed by a projection. Pooling (kernel s+1,
stride s, padding s//2, which gives ceil(H/s) like the strided convs it bypasses) has no
parameters, so the network pools each source node once per stride and shares the result among
all proxies leaving it. Projection: 1x1 conv + BN, or for bottleneck backbones (ResNet-50)
1x1 down to a quarter of the block's inner width + BN + ReLU + 1x1 up + BN.

The attention weight alpha of the path is folded into the last BN's affine parameters
(alpha * BN(z) = BN with weight*alpha and bias*alpha), which saves one full-size multiply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def downsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Max-pool N x C x H x W to N x C x ceil(H/s) x ceil(W/s); identity for stride 1."""
    if stride == 1:
        return x
    return F.max_pool2d(x, kernel_size=stride + 1, stride=stride, padding=stride // 2)


def scaled_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``scale * bn(x)`` in one op, with the same running-statistics update as ``bn(x)``."""
    if scale is None:
        return bn(x)
    training = bn.training or bn.running_mean is None
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    return F.batch_norm(
        x, bn.running_mean, bn.running_var, bn.weight * scale, bn.bias * scale,
        training, bn.momentum if bn.momentum is not None else 0.1, bn.eps,
    )


class Proxy(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int, bottleneck_width: int | None = None
    ) -> None:
        super().__init__()
        self.stride = stride
        if bottleneck_width is None:
            layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 1, bias=False)]
        else:
            inner = max(bottleneck_width // 4, 1)
            layers = [
                nn.Conv2d(in_channels, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
                nn.Conv2d(inner, out_channels, 1, bias=False),
            ]
        self.project = nn.Sequential(*layers)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward_pooled(self, pooled: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``scale * A(x)`` from ``pooled = downsample(x, self.stride)``."""
        return scaled_batch_norm(self.norm, self.project(pooled), scale)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_pooled(downsample(x, self.stride), scale)
