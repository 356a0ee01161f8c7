"""Backbones: one stem / blocks / head description for every supported CNN."""

from raytailor.backbones.base import BlockInfo, BlockNetwork, ResidualBlock
from raytailor.backbones.registry import create_backbone, describe_blocks, list_backbones

__all__ = [
    "BlockInfo", "BlockNetwork", "ResidualBlock", "create_backbone", "describe_blocks",
    "list_backbones",
]
