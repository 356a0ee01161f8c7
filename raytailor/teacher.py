"""The teacher: the pre-trained backbone fine-tuned end to end on the target task.

It is both the accuracy reference (the target is relative to its validation accuracy) and the
NetTailor distillation teacher.
"""

from __future__ import annotations

import copy

import torch.nn.functional as F

from raytailor.backbones import BlockNetwork
from raytailor.data import TensorLoader
from raytailor.train import EpochCallback, OptimConfig, StepLoss, fit, sgd


def fine_tuning_objective(network: BlockNetwork) -> StepLoss:
    """Plain cross-entropy fine-tuning of every parameter."""

    def step_loss(images, labels):
        logits = network(images)
        return F.cross_entropy(logits, labels), logits, {}

    return step_loss


def train_teacher(
    pretrained: BlockNetwork, *, train_loader: TensorLoader, val_loader: TensorLoader,
    config: OptimConfig, on_epoch: EpochCallback | None = None, verbose: bool = True,
) -> BlockNetwork:
    teacher = copy.deepcopy(pretrained)
    teacher.requires_grad_(True)
    fit(teacher, stage="teacher", train_loader=train_loader, val_loader=val_loader,
        optimizer=sgd([{"params": list(teacher.parameters())}], config), epochs=config.epochs,
        step_loss=fine_tuning_objective(teacher), on_epoch=on_epoch, verbose=verbose)
    teacher.eval()
    return teacher
