"""torchvision EfficientNet-B0 re-described as stem / blocks / head.

Blocks are the 16 MBConv units (expand 1x1, depthwise, squeeze-excitation, project 1x1) plus
the final 1x1 conv to 1280 channels. MBConv ends in a linear projection and adds its input
after it (no activation after the addition), so the block activation is the identity and a
residual MBConv becomes a ResidualBlock whose shortcut is the identity. Stochastic depth stays
inside the residual branch, exactly where torchvision applies it.
"""

from __future__ import annotations

from torch import nn

from raytailor.backbones.base import BlockNetwork, ResidualBlock


def from_torchvision_efficientnet(model: nn.Module, arch: str) -> BlockNetwork:
    """Re-describe a torchvision EfficientNet; the returned network shares its parameters."""
    stem, *stages, head_conv = list(model.features)
    blocks: list[nn.Module] = []
    for stage in stages:
        for mbconv in stage:
            if mbconv.use_res_connect:
                blocks.append(ResidualBlock(nn.Sequential(*mbconv.block, mbconv.stochastic_depth)))
            else:
                blocks.append(nn.Sequential(*mbconv.block))
    blocks.append(head_conv)
    dropout, classifier = model.classifier
    pool = nn.Sequential(model.avgpool, nn.Flatten(1), dropout)
    return BlockNetwork(arch=arch, stem=stem, blocks=blocks, classifier=classifier,
                        block_activation=nn.Identity(), pool=pool)
