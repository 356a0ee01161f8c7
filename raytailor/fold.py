"""Fold eval-mode BatchNorm into the preceding convolution, for modules that never train.

A frozen block in eval mode computes ``BN(conv(x))`` with constant statistics, i.e. one conv
with adjusted weights and a bias. Running the folded copy instead removes every BatchNorm
forward and backward from the frozen part of a training step; outputs agree to float rounding.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """In place: every ``Conv2d`` directly followed by ``BatchNorm2d`` inside a Sequential
    becomes one conv (the BN becomes Identity, so indices stay valid). Returns ``module``."""
    module.eval()
    for sequential in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        children = list(sequential.named_children())
        for (name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(sequential, name, fuse_conv_bn_eval(conv, bn))
                setattr(sequential, bn_name, nn.Identity())
    return module.requires_grad_(False)


def folded_copy(module: nn.Module) -> nn.Module:
    return fold_batchnorm(copy.deepcopy(module))


@contextmanager
def folded_attributes(owner: nn.Module, names: list[str]) -> Iterator[None]:
    """Temporarily replace frozen sub-modules ``owner.<name>`` by folded copies."""
    originals = {name: getattr(owner, name) for name in names}
    try:
        for name, module in originals.items():
            setattr(owner, name, folded_copy(module))
        yield
    finally:
        for name, module in originals.items():
            setattr(owner, name, module)
