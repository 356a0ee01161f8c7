"""Proxy layers A_lp: cheap task-specific paths from node p to node l (paper Sec. 3.3).

Basic proxy: max-pool to node l's resolution (kernel s+1, stride s, padding s//2, which gives
ceil(H/s) like the strided convs of the blocks it bypasses), 1x1 conv to node l's channels, BN.
Bottleneck proxy (for bottleneck backbones such as ResNet-50): 1x1 down to a quarter of the
block's inner width, BN, ReLU, 1x1 up, BN.
"""

from __future__ import annotations

from torch import nn


def make_proxy(
    in_channels: int, out_channels: int, *, stride: int, bottleneck_width: int | None = None
) -> nn.Sequential:
    layers: list[nn.Module] = []
    if stride > 1:
        layers.append(nn.MaxPool2d(kernel_size=stride + 1, stride=stride, padding=stride // 2))
    if bottleneck_width is None:
        layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
    else:
        inner = max(bottleneck_width // 4, 1)
        layers += [
            nn.Conv2d(in_channels, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
            nn.Conv2d(inner, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        ]
    return nn.Sequential(*layers)
