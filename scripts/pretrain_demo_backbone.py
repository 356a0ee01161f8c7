"""Pre-train the demo backbone: a ResNet-20 on the synthetic shapes task (the *source* task).

The demo then transfers it to scikit-learn's handwritten digits (the *target* task), a genuinely
different problem, fully offline. The result ships as raytailor/assets/resnet20_shapes16.safetensors
(~1 MB) so `make demo` does not pay for it; rerun this script to regenerate it:

    .venv/bin/python scripts/pretrain_demo_backbone.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from raytailor.backbones import create_backbone
from raytailor.backbones.weights import ASSETS
from raytailor.data import TensorLoader, load_splits
from raytailor.train import OptimConfig, evaluate, fit, sgd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ASSETS / "resnet20_shapes16.safetensors")
    args = parser.parse_args()

    torch.manual_seed(0)
    splits = load_splits(dataset="synthetic", image_size=args.image_size, num_classes=10,
                         samples_per_class=400, seed=123)
    network = create_backbone("resnet20", num_classes=splits.num_classes)

    def loader(split, train=False):
        return TensorLoader(getattr(splits, split), batch_size=128, mean=splits.mean, std=splits.std,
                            shuffle=train, augment=train, device="cpu", seed=0)

    optimizer = sgd([{"params": list(network.parameters())}], OptimConfig(args.epochs, 0.1))

    def step_loss(images, labels):
        logits = network(images)
        return F.cross_entropy(logits, labels), logits, {}

    fit(network, stage="pretrain", train_loader=loader("train", True), val_loader=loader("val"),
        optimizer=optimizer, epochs=args.epochs, step_loss=step_loss)
    test = evaluate(network, loader("test"))
    state = {k: v.contiguous() for k, v in network.state_dict().items()}
    metadata = {"arch": "resnet20", "source_task": "synthetic shapes (10 classes)",
                "image_size": str(args.image_size), "source_test_accuracy": f"{test:.2f}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=metadata)
    print(f"source-task test accuracy {test:.2f}% -> {args.out}")


if __name__ == "__main__":
    main()
