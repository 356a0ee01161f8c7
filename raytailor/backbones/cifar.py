"""Small-input ResNets: a CIFAR-style ResNet-20 (16/32/64) and a Decathlon-style WRN-26.

ResNet-20 (He et al. 2016, CIFAR variant): 3x3 stem to 16 channels, 3 stages of 3 basic
blocks at widths 16/32/64, strides 1/2/2. Shortcuts that change shape use a 1x1 conv + BN.
WRN-26 (Rebuffi et al. 2017, Visual Decathlon, 64 px inputs): 3x3 stem to 32 channels,
3 stages of 4 basic blocks at widths 64/128/256, strides 2/2/2 (64 px -> 8 px).
"""

from __future__ import annotations

from torch import nn

from raytailor.backbones.base import BlockNetwork, ResidualBlock


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int) -> list[nn.Module]:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_ch)]


def basic_block(in_ch: int, out_ch: int, stride: int) -> ResidualBlock:
    residual = nn.Sequential(
        *_conv_bn(in_ch, out_ch, 3, stride), nn.ReLU(inplace=True), *_conv_bn(out_ch, out_ch, 3, 1)
    )
    shortcut = None
    if stride != 1 or in_ch != out_ch:
        shortcut = nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride))
    return ResidualBlock(residual, shortcut)


def _staged_network(
    arch: str, *, stem_width: int, widths: list[int], strides: list[int], depth: int,
    num_classes: int,
) -> BlockNetwork:
    stem = nn.Sequential(*_conv_bn(3, stem_width, 3, 1), nn.ReLU(inplace=True))
    blocks, in_ch = [], stem_width
    for width, stride in zip(widths, strides):
        for i in range(depth):
            blocks.append(basic_block(in_ch, width, stride if i == 0 else 1))
            in_ch = width
    network = BlockNetwork(arch=arch, stem=stem, blocks=blocks, classifier=nn.Linear(in_ch, num_classes))
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return network


def resnet20(num_classes: int = 10) -> BlockNetwork:
    return _staged_network(
        "resnet20", stem_width=16, widths=[16, 32, 64], strides=[1, 2, 2], depth=3,
        num_classes=num_classes,
    )


def wrn26(num_classes: int = 10) -> BlockNetwork:
    return _staged_network(
        "wrn26", stem_width=32, widths=[64, 128, 256], strides=[2, 2, 2], depth=4,
        num_classes=num_classes,
    )
