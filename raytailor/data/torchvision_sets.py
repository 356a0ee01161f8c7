"""Benchmark datasets read through ``torchvision.datasets`` with their official splits.

CIFAR and SVHN hold their pixels as arrays, so they are resized in batches; Flowers102 and DTD
are image files, decoded with PIL and fitted to a square (shorter side, then centre crop).
Flowers102 and DTD merge their official train and val splits into our train source.
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raytailor.data.containers import SourceData
from raytailor.data.images import fit_square, parallel_map, resize_uint8, stack_hwc
from raytailor.errors import DataError

TORCHVISION_DATASETS = ("svhn", "flowers102", "cifar10", "cifar100", "dtd")
_ROOT_ENV = "RAYTAILOR_DATA_ROOT"
_DEFAULT_ROOT = "~/.cache/raytailor/datasets"
_ALL_SPLITS = ("train", "val", "test")


def default_root() -> str:
    """Where datasets live when no root is given: ``$RAYTAILOR_DATA_ROOT`` or the user cache."""
    return str(Path(os.environ.get(_ROOT_ENV, _DEFAULT_ROOT)).expanduser())


def read_torchvision(
    *, dataset: str, root: str | None, image_size: int, download: bool
) -> SourceData:
    """Official train (+val) and test splits of one torchvision dataset at ``image_size``."""
    folder = str(Path(root).expanduser()) if root is not None else default_root()
    readers: dict[str, Callable[[Callable[..., Any], int], SourceData]] = {
        "cifar10": _read_cifar10,
        "cifar100": _read_cifar100,
        "svhn": _read_svhn,
        "flowers102": _read_flowers102,
        "dtd": _read_dtd,
    }

    def open_split(cls: Any, **split: Any) -> Any:
        """Construct ``cls`` on our root, turning torchvision's failures into DataError."""
        try:
            return cls(root=folder, download=download, **split)
        except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
            if download:
                raise DataError(
                    f"dataset {dataset} could not be prepared under {folder} "
                    f"({_brief(error)}); delete the partial files there and retry, "
                    "or download it by hand"
                ) from error
            raise DataError(
                f"dataset {dataset} not found under {folder}; "
                "pass data.download=true or point data.root to it"
            ) from error
        except (OSError, urllib.error.URLError) as error:
            action = "download into" if download else "read from"
            raise DataError(
                f"dataset {dataset} failed to {action} {folder} ({_brief(error)}); "
                "check the network and disk space, or download it by hand and point data.root to it"
            ) from error

    try:
        return readers[dataset](open_split, image_size)
    except OSError as error:  # a file vanished or is corrupt while decoding
        raise DataError(
            f"dataset {dataset} under {folder} cannot be read ({_brief(error)}); "
            "delete it and pass data.download=true to fetch it again"
        ) from error


def _brief(error: BaseException) -> str:
    """First line of an exception message, so DataError stays one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _datasets() -> Any:
    from raytailor._torchvision import torchvision

    return torchvision.datasets


def _from_hwc_arrays(data: np.ndarray, size: int) -> torch.Tensor:
    images = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2)  # N x 3 x H x W
    return resize_uint8(images, size=size)


def _labels(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.int64).reshape(-1)


Open = Callable[..., Any]  # open_split(DatasetClass, **split_kwargs) -> dataset


def _read_cifar(cls: Any, open_split: Open, size: int) -> SourceData:
    train = open_split(cls, train=True)
    test = open_split(cls, train=False)
    return SourceData(
        train_images=_from_hwc_arrays(train.data, size),  # data: N x 32 x 32 x 3 uint8
        train_labels=_labels(train.targets),
        class_names=list(train.classes),
        test_images=_from_hwc_arrays(test.data, size),
        test_labels=_labels(test.targets),
    )


def _read_cifar10(open_split: Open, size: int) -> SourceData:
    return _read_cifar(_datasets().CIFAR10, open_split, size)


def _read_cifar100(open_split: Open, size: int) -> SourceData:
    return _read_cifar(_datasets().CIFAR100, open_split, size)


def _read_svhn(open_split: Open, size: int) -> SourceData:
    train = open_split(_datasets().SVHN, split="train")
    test = open_split(_datasets().SVHN, split="test")

    def images(split: Any) -> torch.Tensor:  # data: N x 3 x 32 x 32 uint8
        return resize_uint8(torch.from_numpy(np.ascontiguousarray(split.data)), size=size)

    return SourceData(
        train_images=images(train),
        train_labels=_labels(train.labels),  # torchvision maps digit 0 (stored as 10) to 0
        class_names=[str(d) for d in range(10)],
        test_images=images(test),
        test_labels=_labels(test.labels),
    )


def _square(size: int) -> Callable[[Any], np.ndarray]:
    """Transform for file-backed datasets: PIL image -> S x S x 3 uint8 array."""
    return lambda image: fit_square(image, size=size)


def _decode_files(split: Any, size: int) -> tuple[torch.Tensor, list[int]]:
    """Decode a file-backed dataset opened with ``_square(size)``, in parallel threads."""
    pairs = parallel_map(lambda i: split[i], len(split))
    return stack_hwc([image for image, _ in pairs], size=size), [int(y) for _, y in pairs]


def _merge(parts: list[tuple[torch.Tensor, list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.cat([images for images, _ in parts])  # N x 3 x S x S
    labels = torch.tensor([label for _, labels in parts for label in labels], dtype=torch.int64)
    return images, labels


def _read_flowers102(open_split: Open, size: int) -> SourceData:
    flowers = _datasets().Flowers102
    splits = {n: open_split(flowers, split=n, transform=_square(size)) for n in _ALL_SPLITS}
    train_images, train_labels = _merge([_decode_files(splits[n], size) for n in ("train", "val")])
    test_images, test_labels = _merge([_decode_files(splits["test"], size)])
    names = list(getattr(flowers, "classes", [])) or [str(i) for i in range(102)]
    return SourceData(train_images, train_labels, names, test_images, test_labels)


def _read_dtd(open_split: Open, size: int) -> SourceData:
    dtd = _datasets().DTD
    splits = {n: open_split(dtd, split=n, transform=_square(size)) for n in _ALL_SPLITS}
    names = sorted({c for split in splits.values() for c in split.classes})
    index = {name: i for i, name in enumerate(names)}

    def decode(split: Any) -> tuple[torch.Tensor, list[int]]:
        images, labels = _decode_files(split, size)
        return images, [index[split.classes[label]] for label in labels]  # per-split -> global

    train_images, train_labels = _merge([decode(splits["train"]), decode(splits["val"])])
    test_images, test_labels = _merge([decode(splits["test"])])
    return SourceData(train_images, train_labels, names, test_images, test_labels)
