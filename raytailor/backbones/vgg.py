"""torchvision VGG-16-BN re-described as stem / blocks / head.

Each conv + BN of ``features`` becomes one block (conv-only VGG has no residual units, so
the natural block is a layer); the first conv is the stem. A max-pool that precedes a conv in
torchvision's order is moved to the front of that conv's block: max-pooling commutes with the
ReLU (both monotone), so node l is the same tensor torchvision computes, pooled where it pools.
The last max-pool, the adaptive 7x7 pool and the two 4096-wide FC layers form the head; the
final FC is the classifier.
"""

from __future__ import annotations

from torch import nn

from raytailor.backbones.base import BlockNetwork


def from_torchvision_vgg(model: nn.Module, arch: str) -> BlockNetwork:
    """Re-describe a torchvision VGG (with BN); the returned network shares its parameters."""
    layers = list(model.features)
    units: list[list[nn.Module]] = []  # [maybe max-pool, conv, bn] per conv
    pending_pool: list[nn.Module] = []
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.MaxPool2d):
            pending_pool = [layer]
        elif isinstance(layer, nn.Conv2d):
            bn = layers[index + 1]
            if not isinstance(bn, nn.BatchNorm2d):
                raise TypeError(f"{arch}: conv {index} is not followed by BatchNorm2d; use the _bn VGG")
            units.append([*pending_pool, layer, bn])
            pending_pool = []
    stem = nn.Sequential(*units[0], nn.ReLU(inplace=True))
    blocks = [nn.Sequential(*unit) for unit in units[1:]]
    fc1, _, _, fc2, _, _, classifier = model.classifier
    pool = nn.Sequential(
        *pending_pool, model.avgpool, nn.Flatten(1),
        fc1, nn.ReLU(inplace=True), nn.Dropout(model.classifier[2].p),
        fc2, nn.ReLU(inplace=True), nn.Dropout(model.classifier[5].p),
    )
    return BlockNetwork(arch=arch, stem=stem, blocks=blocks, classifier=classifier, pool=pool)
