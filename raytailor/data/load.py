"""``load_splits``: read a dataset by name and cut it into seeded, stratified train/val/test."""

from __future__ import annotations

from collections.abc import Callable

import torch

from raytailor.data.containers import SourceData, Splits, TensorSplit
from raytailor.data.digits import read_digits
from raytailor.data.imagefolder import read_imagefolder
from raytailor.data.stats import channel_mean_std
from raytailor.data.stratify import STREAM_TEST, STREAM_VAL, cap_per_class, stratified_carve
from raytailor.data.synthetic import read_synthetic
from raytailor.data.torchvision_sets import TORCHVISION_DATASETS, read_torchvision
from raytailor.errors import DataError

KNOWN_DATASETS = ("digits", "synthetic", "imagefolder", *TORCHVISION_DATASETS)
# Horizontal flips change what a digit means; synthetic stays unflipped like the digit tasks.
_NO_FLIP = frozenset({"digits", "svhn", "synthetic"})
MIN_IMAGE_SIZE = 8


def default_flip(dataset: str) -> bool:
    """Whether random horizontal flips preserve labels for ``dataset`` (False for digit tasks)."""
    return _dataset_name(dataset) not in _NO_FLIP


def load_splits(
    *,
    dataset: str,
    root: str | None = None,
    image_size: int,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = False,
    num_classes: int | None = None,
    samples_per_class: int | None = None,
) -> Splits:
    """Load ``dataset`` as uint8 tensors of ``image_size`` and split it reproducibly.

    The test split is the official one where the dataset has it, else ``test_fraction`` of the
    data carved first; ``val_fraction`` of what remains (the train source) becomes val. Both
    carves are stratified and seeded by ``seed``. ``num_classes`` keeps the first N classes of
    the dataset's label order (sorted folder names for imagefolder); ``samples_per_class``
    caps every class of the train source (before val is carved; the test split is untouched).
    """
    name = _dataset_name(dataset)
    _check_args(image_size, val_fraction, test_fraction, seed, num_classes, samples_per_class)
    source = _read(name, root, image_size, seed, download, num_classes, samples_per_class)
    source = _keep_first_classes(source, num_classes)
    present = len(set(source.train_labels.tolist()))
    if len(source.class_names) < 2 or present < 2:
        raise DataError(
            f"{name}{f' at {root}' if root else ''} has {min(len(source.class_names), present)} class with "
            "training images; a task needs at least two (one folder per class)"
        )

    pool_images, pool_labels = source.train_images, source.train_labels  # N x 3 x S x S, N
    if source.test_images is not None and source.test_labels is not None:
        test = TensorSplit(source.test_images, source.test_labels)
    else:
        _require(test_fraction > 0, "test_fraction", test_fraction, name)
        kept, carved = stratified_carve(
            pool_labels, fraction=test_fraction, seed=seed, stream=STREAM_TEST
        )
        test = TensorSplit(pool_images[carved], pool_labels[carved])
        pool_images, pool_labels = pool_images[kept], pool_labels[kept]
    if samples_per_class is not None:
        capped = cap_per_class(pool_labels, limit=samples_per_class, seed=seed)
        pool_images, pool_labels = pool_images[capped], pool_labels[capped]
    _require(val_fraction > 0, "val_fraction", val_fraction, name)
    kept, carved = stratified_carve(
        pool_labels, fraction=val_fraction, seed=seed, stream=STREAM_VAL
    )
    train = TensorSplit(pool_images[kept], pool_labels[kept])
    val = TensorSplit(pool_images[carved], pool_labels[carved])

    for split_name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise DataError(
                f"{name} {split_name} split is empty (val_fraction={val_fraction}, "
                f"test_fraction={test_fraction}, samples_per_class={samples_per_class}); "
                "use more data per class or adjust the fractions"
            )
    mean, std = channel_mean_std(train.images)
    return Splits(
        train=train,
        val=val,
        test=test,
        num_classes=len(source.class_names),
        class_names=list(source.class_names),
        mean=mean,
        std=std,
    )


def _dataset_name(dataset: str) -> str:
    name = dataset.strip().lower() if isinstance(dataset, str) else dataset
    if name not in KNOWN_DATASETS:
        raise DataError(
            f"unknown dataset {dataset!r}; use one of {', '.join(KNOWN_DATASETS)}"
        )
    return name


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_args(
    image_size: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    num_classes: int | None,
    samples_per_class: int | None,
) -> None:
    if not _is_int(image_size) or image_size < MIN_IMAGE_SIZE:
        raise DataError(
            f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}; "
            "set data.image_size to e.g. 32"
        )
    for label, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise DataError(f"{label} must be in [0, 1), got {value!r}; use e.g. 0.1")
    if not _is_int(seed) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}; use e.g. 0")
    if num_classes is not None and (not _is_int(num_classes) or num_classes < 2):
        raise DataError(
            f"num_classes must be an integer >= 2 or unset, got {num_classes!r}; "
            "unset it to keep every class"
        )
    if samples_per_class is not None and (not _is_int(samples_per_class) or samples_per_class < 1):
        raise DataError(
            f"samples_per_class must be a positive integer or unset, got {samples_per_class!r}; "
            "unset it to keep every sample"
        )


def _require(ok: bool, label: str, value: float, name: str) -> None:
    if not ok:
        raise DataError(
            f"{label} must be > 0 for dataset {name} (it would leave an empty split), "
            f"got {value!r}; use e.g. {0.2 if label == 'test_fraction' else 0.1}"
        )


def _read(
    name: str,
    root: str | None,
    image_size: int,
    seed: int,
    download: bool,
    num_classes: int | None,
    samples_per_class: int | None,
) -> SourceData:
    readers: dict[str, Callable[[], SourceData]] = {
        "digits": lambda: read_digits(image_size=image_size),
        "synthetic": lambda: read_synthetic(
            image_size=image_size,
            seed=seed,
            num_classes=num_classes,
            samples_per_class=samples_per_class,
        ),
        "imagefolder": lambda: read_imagefolder(root=root, image_size=image_size),
    }
    if name in readers:
        return readers[name]()
    return read_torchvision(dataset=name, root=root, image_size=image_size, download=download)


def _keep_first_classes(source: SourceData, num_classes: int | None) -> SourceData:
    """Keep labels 0..N-1 (the first N class names) in train and test."""
    available = len(source.class_names)
    if num_classes is None or num_classes == available:
        return source
    if num_classes > available:
        raise DataError(
            f"num_classes={num_classes} exceeds the {available} classes available; "
            f"set data.num_classes <= {available} or unset it"
        )

    def keep(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = labels < num_classes
        return images[mask], labels[mask]

    train_images, train_labels = keep(source.train_images, source.train_labels)
    test_images, test_labels = source.test_images, source.test_labels
    if test_images is not None and test_labels is not None:
        test_images, test_labels = keep(test_images, test_labels)
    return SourceData(
        train_images, train_labels, source.class_names[:num_classes], test_images, test_labels
    )
