"""torchvision ResNets (resnet18/34/50/101) re-described as stem / blocks / head.

The torchvision model is built first (so ImageNet weights load through torchvision's own
weight enums and download code, see ``torchvision_zoo``), then its modules are moved, not
copied, into a :class:`BlockNetwork`. Each torchvision BasicBlock/Bottleneck becomes a :class:`ResidualBlock`
whose forward stops before the final ReLU.
"""

from __future__ import annotations

from torch import nn

from raytailor.backbones.base import BlockNetwork, ResidualBlock


def _residual_of(block: nn.Module) -> tuple[nn.Sequential, int | None]:
    """The residual branch of a torchvision block as a Sequential, and its bottleneck width."""
    from raytailor._torchvision import torchvision  # only when a torchvision model is re-described

    _tv_resnet = torchvision.models.resnet
    if isinstance(block, _tv_resnet.Bottleneck):
        branch = nn.Sequential(
            block.conv1, block.bn1, nn.ReLU(inplace=True),
            block.conv2, block.bn2, nn.ReLU(inplace=True),
            block.conv3, block.bn3,
        )
        return branch, block.conv1.out_channels
    if isinstance(block, _tv_resnet.BasicBlock):
        branch = nn.Sequential(block.conv1, block.bn1, nn.ReLU(inplace=True), block.conv2, block.bn2)
        return branch, None
    raise TypeError(f"unsupported ResNet block {type(block).__name__}")


def from_torchvision_resnet(model: nn.Module, arch: str) -> BlockNetwork:
    """Re-describe a torchvision ResNet; the returned network shares its parameter tensors."""
    stem = nn.Sequential(model.conv1, model.bn1, nn.ReLU(inplace=True), model.maxpool)
    blocks, widths = [], []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            residual, width = _residual_of(block)
            blocks.append(ResidualBlock(residual, block.downsample))
            widths.append(width)
    return BlockNetwork(
        arch=arch, stem=stem, blocks=blocks, classifier=model.fc, bottleneck_widths=widths
    )

