"""TransTailor vs torch-pruning's L1-magnitude and Taylor pruning at the same MACs reduction.

Same data (the demo task: digits at 16 px), same backbone (the demo's ResNet-20 pre-trained on
synthetic shapes), one shared W* (the network fine-tuned on the target), the same fine-tuning
budget and learning rate after pruning, in one process:

- TransTailor: tau disabled, prune_fraction 0.1 of W*'s MACs per iteration, 2 iterations for
  ~20 % and 4 for ~40 %, `finetune_epochs` of importance-aware fine-tuning per iteration;
- L1 / Taylor: torch-pruning's MetaPruner (global ranking, classifier ignored) pruned in small
  steps until the MACs reduction reaches the target, then iterations x finetune_epochs of plain
  fine-tuning.

Reported: test accuracy (the validation split is not used for any choice here) and the MACs
reduction actually reached. Batches are NCHW here: on torch 2.13 CPU, channels_last batches into
a network pruned by torch-pruning's MetaPruner abort in oneDNN's backward ("double free").

    .venv/bin/python benchmarks/pruning_baselines.py
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import torch_pruning as tp

from raytailor.backbones import create_backbone
from raytailor.cost import image_macs
from raytailor.data import TensorLoader, load_splits
from raytailor.teacher import fine_tuning_objective
from raytailor.train import OptimConfig, evaluate, fit, sgd
from raytailor.transtailor import TransTailorConfig, run_transtailor

IMAGE_SIZE, FINETUNE_EPOCHS, LR = 16, 4, 0.02


def loaders():
    splits = load_splits(dataset="digits", image_size=IMAGE_SIZE, seed=0)

    def make(split, train=False):
        return TensorLoader(getattr(splits, split), batch_size=64, mean=splits.mean, std=splits.std,
                            shuffle=train, augment=train, device="cpu", seed=0, channels_last=False)
    return make("train", True), make("val"), make("test")


def fine_tune(network, train, epochs, lr):
    network.requires_grad_(True)
    fit(network, stage="finetune", train_loader=train, val_loader=None, epochs=epochs,
        optimizer=sgd([{"params": list(network.parameters())}], OptimConfig(epochs, lr, 0.9, 5e-4)),
        step_loss=fine_tuning_objective(network), verbose=False)
    return network.eval()


def baseline(w_star, train, importance, target, epochs):
    network = copy.deepcopy(w_star)
    network.requires_grad_(True)
    network.zero_grad(set_to_none=True)  # gradients of the old shapes must not survive pruning
    example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    base = image_macs(network, IMAGE_SIZE)
    pruner = tp.pruner.MetaPruner(network, example, importance=importance, global_pruning=True,
                                  pruning_ratio=0.9, max_pruning_ratio=0.9, iterative_steps=90,
                                  ignored_layers=[network.classifier])
    for _ in range(90):
        if 1 - image_macs(network, IMAGE_SIZE) / base >= target:
            break
        if isinstance(importance, tp.importance.TaylorImportance):
            network.zero_grad()
            for i, (images, labels) in enumerate(train):
                F.cross_entropy(network(images), labels).backward()
                if i == 3:
                    break
        pruner.step()
        network.zero_grad(set_to_none=True)
    network.zero_grad(set_to_none=True)
    reached = 1 - image_macs(network, IMAGE_SIZE) / base
    return fine_tune(network, train, epochs, LR), reached


def main() -> None:
    torch.manual_seed(0)
    train, val, test = loaders()
    backbone = create_backbone("resnet20", num_classes=10, weights="asset:resnet20_shapes16.safetensors")
    w_star = fine_tune(copy.deepcopy(backbone), train, 12, 0.05)
    base_macs = image_macs(w_star, IMAGE_SIZE)
    print(f"W*: test {evaluate(w_star, test):.2f}%  MACs {base_macs:,}")
    print(f"{'target':>7} {'method':<12} {'MACs reduction':>15} {'test accuracy':>14}")
    for target, iterations in ((0.2, 2), (0.4, 4)):
        config = TransTailorConfig(prune_fraction=0.1, tau=1e9, max_iterations=iterations, classifier_epochs=0,
                                   full_finetune_epochs=0, factor_epochs=1, finetune_epochs=FINETUNE_EPOCHS,
                                   classifier_lr=LR, conv_lr=LR, batch_size=64)
        torch.manual_seed(0)
        outcome = run_transtailor(w_star, config=config, image_size=IMAGE_SIZE, train_loader=train,
                                  val_loader=val, verbose=False)
        rows = [("TransTailor", outcome.model, 1 - image_macs(outcome.model, IMAGE_SIZE) / base_macs)]
        for name, importance in (("L1", tp.importance.MagnitudeImportance(p=1)),
                                 ("Taylor", tp.importance.TaylorImportance())):
            torch.manual_seed(0)
            model, reached = baseline(w_star, train, importance, target, iterations * FINETUNE_EPOCHS)
            rows.append((name, model, reached))
        for name, model, reached in rows:
            print(f"{target:>7.0%} {name:<12} {reached:>14.1%} {evaluate(model, test):>13.2f}%", flush=True)


if __name__ == "__main__":
    main()
