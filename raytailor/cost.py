"""Cost accounting: parameters and multiply-accumulates (MACs) of any module.

MACs are what both papers call "FLOPs": multiply-accumulates of convolutions and linear layers.
``torch.utils.flop_counter.FlopCounterMode`` counts those as 2 x MACs, so we halve it.
BatchNorm, ReLU and pooling are not counted (they are element-wise and cheap).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(modules: nn.Module | Iterable[nn.Module]) -> int:
    """Number of parameter elements, each shared tensor counted once."""
    if isinstance(modules, nn.Module):
        modules = [modules]
    seen: dict[int, int] = {}
    for module in modules:
        for parameter in module.parameters():
            seen[id(parameter)] = parameter.numel()
    return sum(seen.values())


@torch.no_grad()
def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward pass of ``module`` on ``inputs`` (use batch size 1 for per-image cost)."""
    was_training = module.training
    module.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops()) // 2


def image_macs(module: nn.Module, image_size: int, channels: int = 3) -> int:
    """MACs per image of size ``channels x image_size x image_size``."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    return count_macs(module, torch.zeros(1, channels, image_size, image_size, device=device))
