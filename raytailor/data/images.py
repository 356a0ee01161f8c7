"""Image conversion helpers: PIL decoding/cropping for files, batched resizing for arrays.

``torchvision.io`` decoding is unavailable in our torchvision setup, so files go through PIL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from raytailor.errors import DataError

_RESIZE_CHUNK = 1024  # images per interpolate call: bounds the float temporary
T = TypeVar("T")


def fit_square(image: Image.Image, *, size: int) -> np.ndarray:
    """RGB ``size`` x ``size`` uint8 array (H x W x 3): resize the shorter side, centre-crop.

    Centre-cropping keeps the aspect ratio (no stretching); the border of the longer side is lost.
    """
    rgb = image.convert("RGB")
    fitted = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BILINEAR, centering=(0.5, 0.5))
    return np.asarray(fitted, dtype=np.uint8)  # S x S x 3


def load_image_file(path: str | Path, *, size: int) -> np.ndarray:
    """Decode one image file into an S x S x 3 uint8 array; unreadable files raise DataError."""
    try:
        with Image.open(path) as image:
            return fit_square(image, size=size)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"image file {path} cannot be decoded ({error}); delete or replace the file"
        ) from error


def parallel_map(function: Callable[[int], T], count: int) -> list[T]:
    """``[function(i) for i in range(count)]`` on a thread pool (PIL decoding releases the GIL)."""
    workers = min(16, os.cpu_count() or 1)
    if count < 64 or workers == 1:
        return [function(i) for i in range(count)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, range(count)))


def stack_hwc(arrays: Sequence[np.ndarray], *, size: int) -> torch.Tensor:
    """Stack S x S x 3 uint8 arrays into a contiguous N x 3 x S x S uint8 tensor."""
    if not arrays:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8)
    stacked = torch.from_numpy(np.stack(arrays))  # N x S x S x 3
    return stacked.permute(0, 3, 1, 2).contiguous()  # N x 3 x S x S


def resize_uint8(images: torch.Tensor, *, size: int, antialias: bool = True) -> torch.Tensor:
    """Bilinear-resize uint8 N x C x H x W images to N x C x size x size (no-op if same)."""
    if images.shape[2] == size and images.shape[3] == size:
        return images.contiguous()
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].float()  # n x C x H x W
        resized = F.interpolate(
            chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias
        )
        out[start : start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out
