"""scikit-learn's bundled 8x8 handwritten digits: a real, offline task for demos and tests."""

from __future__ import annotations

import torch

from raytailor.data.containers import SourceData
from raytailor.data.images import resize_uint8


def read_digits(*, image_size: int) -> SourceData:
    """All 1,797 digits as 3-channel uint8 images of ``image_size``; no official test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = torch.from_numpy(bunch.images).float()  # N x 8 x 8, values 0..16
    gray = (pixels * (255.0 / 16.0)).round_().clamp_(0, 255).to(torch.uint8).unsqueeze(1)
    gray = resize_uint8(gray, size=image_size, antialias=False)  # N x 1 x S x S
    images = gray.expand(-1, 3, -1, -1).contiguous()  # N x 3 x S x S
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    return SourceData(
        train_images=images, train_labels=labels, class_names=[str(d) for d in range(10)]
    )
