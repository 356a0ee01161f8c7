"""Batched, on-device augmentation of uint8 images: random crop with zero padding and flips.

Crops and flips become one gather with per-sample index grids, so a batch is augmented without
a Python loop over samples.
"""

from __future__ import annotations

import torch


def crop_padding(image_size: int) -> int:
    """Zero padding (pixels per side) of the random crop: an eighth of the image, at least 1."""
    return max(1, image_size // 8)


def draw_crop_flip(
    batch: int, *, padding: int, flip: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crop offsets (y, x in [0, 2*padding]) and flip flags for ``batch`` images (CPU)."""
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator)  # 2 x B
    if flip:
        flips = torch.rand(batch, generator=generator) < 0.5  # B
    else:
        flips = torch.zeros(batch, dtype=torch.bool)
    return offsets[0], offsets[1], flips


def crop_flip(
    images: torch.Tensor,
    *,
    padding: int,
    offset_y: torch.Tensor,
    offset_x: torch.Tensor,
    flips: torch.Tensor,
) -> torch.Tensor:
    """Crop each zero-padded image at its offset, mirroring it where ``flips`` is set.

    images: B x C x S x S (any dtype); offset_y, offset_x: int64 B in [0, 2*padding];
    flips: bool B. Returns B x C x S x S on the images' device.
    """
    batch, channels, size, _ = images.shape
    device = images.device
    padded = images.new_zeros(batch, channels, size + 2 * padding, size + 2 * padding)
    padded[:, :, padding : padding + size, padding : padding + size] = images
    steps = torch.arange(size, device=device)  # S
    flips = flips.to(device)[:, None]  # B x 1
    rows = offset_y.to(device)[:, None] + steps  # B x S
    cols = offset_x.to(device)[:, None] + torch.where(flips, size - 1 - steps, steps)  # B x S
    batch_index = torch.arange(batch, device=device)[:, None, None]  # B x 1 x 1
    out = padded[batch_index, :, rows[:, :, None], cols[:, None, :]]  # B x S x S x C
    return out.permute(0, 3, 1, 2).contiguous()  # B x C x S x S
