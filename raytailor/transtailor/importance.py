"""Target-aware filter importance beta (paper Eq. 5): a Taylor term comparable across layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from raytailor.data import TensorLoader
from raytailor.transtailor.gates import ChannelScale

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def filter_importance(
    network: nn.Module, scales: Sequence[ChannelScale], loader: TensorLoader, loss_fn: LossFn,
) -> list[torch.Tensor]:
    """beta_j = |dL/dalpha_j * alpha_j| with L the loss SUMMED over every batch of ``loader``
    (the gradient is accumulated over the whole pass, not taken from the last batch).

    Runs the network in eval mode (BN on running statistics: the frozen pre-trained function)
    and restores its mode and the alphas' requires_grad afterwards. One tensor per scale (C_j).
    """
    was_training = network.training
    saved = [s.alpha.requires_grad for s in scales]
    grads = [torch.zeros_like(s.alpha) for s in scales]
    network.eval()
    try:
        for scale in scales:
            scale.alpha.requires_grad_(True)
        for images, labels in loader:
            loss = loss_fn(network(images), labels)
            for total, grad in zip(grads, torch.autograd.grad(loss, [s.alpha for s in scales])):
                total += grad
    finally:
        network.train(was_training)
        for scale, flag in zip(scales, saved):
            scale.alpha.requires_grad_(flag)
    return [(g * s.alpha.detach()).abs() for g, s in zip(grads, scales)]
