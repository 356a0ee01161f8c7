"""The in-memory dataset types every trainer consumes: uint8 image tensors plus int64 labels.

Keeping whole splits as compact uint8 tensors (not file lists) makes loading a one-off cost and
lets :class:`~raytailor.data.loader.TensorLoader` batch, augment and normalise on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raytailor.errors import DataError


@dataclass
class TensorSplit:
    """One split: ``images`` uint8 N x 3 x S x S (CPU, contiguous) and ``labels`` int64 N."""

    images: torch.Tensor  # uint8, N x 3 x S x S
    labels: torch.Tensor  # int64, N

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(
                f"TensorSplit images must be uint8 N x 3 x S x S, got {images.dtype} "
                f"{tuple(images.shape)}; convert with .to(torch.uint8) and replicate gray to "
                "3 channels"
            )
        if images.shape[2] != images.shape[3]:
            raise DataError(
                f"TensorSplit images must be square, got {images.shape[2]}x{images.shape[3]}; "
                "resize/crop to image_size x image_size"
            )
        if labels.dtype != torch.int64 or labels.dim() != 1 or len(labels) != len(images):
            raise DataError(
                f"TensorSplit labels must be int64 of length N={len(images)}, got {labels.dtype} "
                f"{tuple(labels.shape)}; pass labels as torch.long with one entry per image"
            )
        self.images = images.cpu().contiguous()
        self.labels = labels.cpu().contiguous()

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Splits:
    """Train/val/test splits of one task plus what a model needs to consume them."""

    train: TensorSplit
    val: TensorSplit  # carved from the training data, stratified, seeded
    test: TensorSplit  # official test split, else carved (stratified, seeded) before val
    num_classes: int
    class_names: list[str]
    mean: tuple[float, float, float]  # per-channel mean of train images in [0, 1]
    std: tuple[float, float, float]  # per-channel std of train images in [0, 1]


@dataclass
class SourceData:
    """What a dataset reader returns before splitting: a train source and an optional test set.

    ``test_*`` is None when the dataset has no official test split; the test split is then
    carved from the train source.
    """

    train_images: torch.Tensor  # uint8, N x 3 x S x S
    train_labels: torch.Tensor  # int64, N
    class_names: list[str]
    test_images: torch.Tensor | None = None  # uint8, M x 3 x S x S
    test_labels: torch.Tensor | None = None  # int64, M
