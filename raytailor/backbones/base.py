"""The one description every backbone honours: stem -> ordered blocks -> head -> classifier.

Both tailoring methods consume only this contract. Node 0 is the stem output; node l is the
output of block l after the backbone's block activation. Blocks return their *pre-activation*
output (for a ResNet block, the residual sum before the final ReLU), because NetTailor mixes
several paths before one shared activation (paper Eq. 2-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BlockInfo:
    """Static facts of block l (1-based), measured at a given input size."""

    index: int
    in_channels: int
    out_channels: int
    stride: int  # spatial down-sampling from node l-1 to node l (1 or 2)
    resolution: int  # height of node l's feature map
    in_resolution: int  # height of node l-1's feature map (this block's input)
    params: int
    macs: int
    bottleneck_width: int | None  # inner width of a bottleneck block, None for basic blocks


class BlockNetwork(nn.Module):
    """A CNN split into stem, ordered blocks and head (pooling + classifier).

    ``forward(x)`` gives logits; ``forward_nodes(x)`` also returns every node activation,
    which the NetTailor teacher term needs.
    """

    def __init__(
        self,
        *,
        arch: str,
        stem: nn.Module,
        blocks: list[nn.Module],
        classifier: nn.Linear,
        block_activation: nn.Module | None = None,
        pool: nn.Module | None = None,
        bottleneck_widths: list[int | None] | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.block_activation = block_activation if block_activation is not None else nn.ReLU()
        self.pool = pool if pool is not None else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = classifier
        self.bottleneck_widths = bottleneck_widths or [None] * len(blocks)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for ``num_classes`` classes."""
        old = self.classifier
        self.classifier = nn.Linear(old.in_features, num_classes).to(old.weight.device)

    def forward_nodes(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return ([node_0 .. node_L], logits); node l is N x C_l x H_l x W_l."""
        nodes = [self.stem(x)]
        for block in self.blocks:
            nodes.append(self.block_activation(block(nodes[-1])))
        return nodes, self.classifier(self.pool(nodes[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = self.block_activation(block(x))
        return self.classifier(self.pool(x))

    def backbone_modules(self) -> list[nn.Module]:
        """The shared pre-trained part: everything but the classifier."""
        return [self.stem, self.blocks, self.block_activation, self.pool]


class ResidualBlock(nn.Module):
    """``residual(x) + shortcut(x)``, returned before the activation (see module docstring)."""

    def __init__(self, residual: nn.Sequential, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.residual = residual
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)
