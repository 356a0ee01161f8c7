"""``TensorLoader``: batches of a uint8 ``TensorSplit``, augmented and normalised on a device.

Replaces a DataLoader for in-memory splits: no worker processes, no per-sample transforms,
and every epoch's shuffle and augmentation is a pure function of (seed, epoch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from raytailor.data.augment import crop_flip, crop_padding, draw_crop_flip
from raytailor.data.containers import TensorSplit
from raytailor.errors import DataError


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit generator seed for one (seed, epoch) pair."""
    words = np.random.SeedSequence([seed % 2**64, epoch % 2**64]).generate_state(2)
    return int((int(words[0]) << 32 | int(words[1])) & (2**63 - 1))


class TensorLoader:
    """Iterates (images float32 normalised N x 3 x S x S, labels int64) batches on ``device``.

    Batches come from one uint8 TensorSplit, indexed per batch (the split is never copied whole).

    Each pass uses the current epoch, then advances it; ``set_epoch`` pins the next pass's
    epoch so that runs (and resumed runs) see the same shuffle and augmentation. ``flip`` only
    acts together with ``augment``; without ``augment`` batches are only normalised.
    """

    def __init__(
        self,
        split: TensorSplit,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = False,
        augment: bool = False,
        flip: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        channels_last: bool = True,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(
                f"batch_size must be a positive integer, got {batch_size!r}; use e.g. 64"
            )
        if len(mean) != 3 or len(std) != 3 or min(float(s) for s in std) <= 0:
            raise DataError(
                f"mean and std need 3 values with std > 0, got mean={tuple(mean)} "
                f"std={tuple(std)}; "
                "pass Splits.mean and Splits.std"
            )
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.flip = flip
        self.device = torch.device(device)
        self.seed = int(seed)
        self.drop_last = drop_last
        # NHWC batches: conv and pooling kernels are several times faster on CPU (oneDNN) and use
        # tensor cores on GPU; models follow the input's memory format.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._epoch = 0
        self._padding = crop_padding(split.images.shape[-1])
        # Normalising (x/255 - mean)/std as (x - 255*mean) * (1/(255*std)): 3 values, 1 x 3 x 1 x 1.
        mean_t = torch.tensor([float(m) for m in mean], dtype=torch.float32)
        std_t = torch.tensor([float(s) for s in std], dtype=torch.float32)
        self._shift = (mean_t * 255.0).view(1, 3, 1, 1).to(self.device)
        self._scale = (1.0 / (std_t * 255.0)).view(1, 3, 1, 1).to(self.device)

    def __len__(self) -> int:
        """Number of batches per pass."""
        count = len(self.split)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch``'s shuffle order and augmentation draws."""
        self._epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        count = len(self.split)
        order = torch.randperm(count, generator=generator) if self.shuffle else None
        for batch in range(len(self)):
            start, stop = batch * self.batch_size, min((batch + 1) * self.batch_size, count)
            index = order[start:stop] if order is not None else slice(start, stop)
            images = self.split.images[index].to(self.device, non_blocking=True)  # B x 3 x S x S
            labels = self.split.labels[index].to(self.device, non_blocking=True)  # B
            if self.augment:
                offset_y, offset_x, flips = draw_crop_flip(
                    images.shape[0], padding=self._padding, flip=self.flip, generator=generator
                )
                images = crop_flip(
                    images, padding=self._padding, offset_y=offset_y, offset_x=offset_x, flips=flips
                )
            images = images.float().sub_(self._shift).mul_(self._scale)
            yield images.contiguous(memory_format=self.memory_format), labels
