"""Images in class folders: ``root/<class>/<files>``, or ``root/{train,test}/<class>/<files>``.

Every image is decoded with PIL, converted to RGB and fitted to a square by resizing its
shorter side to ``image_size`` and centre-cropping (no stretching).
"""

from __future__ import annotations

from pathlib import Path

import torch

from raytailor.data.containers import SourceData
from raytailor.data.images import load_image_file, parallel_map, stack_hwc
from raytailor.errors import DataError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


def read_imagefolder(*, root: str | None, image_size: int) -> SourceData:
    """Read a class-folder tree; ``root/train`` + ``root/test`` give the official test split."""
    if root is None:
        raise DataError(
            "dataset imagefolder needs a root, got none; set data.root to a folder of "
            "<class>/<images> (or train/ and test/ folders of them)"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(
            f"imagefolder root {base} does not exist or is not a folder; point data.root to a "
            "folder of <class>/<images> (or train/ and test/ folders of them)"
        )
    if (base / "train").is_dir() and (base / "test").is_dir():
        train_files, class_names = _scan(base / "train")
        test_files, test_classes = _scan(base / "test")
        extra = sorted(set(test_classes) - set(class_names))
        if extra:
            raise DataError(
                f"imagefolder test classes {extra} under {base / 'test'} have no train folder; "
                f"add them to {base / 'train'} or remove them from test"
            )
        index = {name: i for i, name in enumerate(class_names)}
        test_images, test_labels = _decode(test_files, test_classes, index, image_size)
    else:
        train_files, class_names = _scan(base)
        index = {name: i for i, name in enumerate(class_names)}
        test_images = test_labels = None
    train_images, train_labels = _decode(train_files, class_names, index, image_size)
    return SourceData(
        train_images=train_images,
        train_labels=train_labels,
        class_names=class_names,
        test_images=test_images,
        test_labels=test_labels,
    )


def _scan(folder: Path) -> tuple[list[list[Path]], list[str]]:
    """Image files per class (sorted class names, files sorted, searched recursively)."""
    class_dirs = sorted(
        d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
    )
    files = [
        sorted(
            f
            for f in d.rglob("*")
            if f.suffix.lower() in IMAGE_SUFFIXES
            and f.is_file()
            and not any(part.startswith(".") for part in f.relative_to(d).parts)
        )
        for d in class_dirs
    ]
    kept = [(d.name, fs) for d, fs in zip(class_dirs, files) if fs]
    if not kept:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DataError(
            f"imagefolder {folder} has no class folders with images ({suffixes}); "
            "lay it out as <class>/<image files>"
        )
    return [fs for _, fs in kept], [name for name, _ in kept]


def _decode(
    files: list[list[Path]], classes: list[str], index: dict[str, int], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images N x 3 x S x S and int64 labels N for the files of each named class."""
    paths = [path for class_files in files for path in class_files]
    labels = [index[name] for name, class_files in zip(classes, files) for _ in class_files]
    arrays = parallel_map(lambda i: load_image_file(paths[i], size=size), len(paths))
    return stack_hwc(arrays, size=size), torch.tensor(labels, dtype=torch.int64)
