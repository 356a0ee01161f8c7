"""Tests of raytailor.data: dataset readers, seeded stratified splits and the tensor loader."""

from __future__ import annotations

import hashlib
import os
import pickle
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from raytailor.data import (
    KNOWN_DATASETS,
    Splits,
    TensorLoader,
    TensorSplit,
    default_flip,
    load_splits,
)
from raytailor.data.augment import crop_flip
from raytailor.data.stratify import STREAM_VAL, stratified_carve
from raytailor.data.synthetic import generate
from raytailor.errors import DataError


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_splits(dataset="digits", image_size=16, seed=0)


def _hashes(split: TensorSplit) -> set[str]:
    return {hashlib.sha1(image.numpy().tobytes()).hexdigest() for image in split.images}


def _check_split_tensors(split: TensorSplit, size: int) -> None:
    assert split.images.dtype == torch.uint8
    assert split.images.shape[1:] == (3, size, size)
    assert split.images.is_contiguous() and split.images.device.type == "cpu"
    assert split.labels.dtype == torch.int64
    assert split.labels.shape == (len(split),)


# --- digits -------------------------------------------------------------------------------


def test_digits_shapes_sizes_and_classes(digits: Splits) -> None:
    for split in (digits.train, digits.val, digits.test):
        _check_split_tensors(split, 16)
    assert digits.num_classes == 10
    assert digits.class_names == [str(d) for d in range(10)]
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert abs(len(digits.test) - 0.2 * 1797) < 15  # test carved first
    assert abs(len(digits.val) - 0.1 * (1797 - len(digits.test))) < 15
    images = digits.train.images
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert images.max() == 255 and images.min() == 0  # 0..16 scaled to the full uint8 range
    assert len(set(digits.mean)) == 1 and 0.1 < digits.mean[0] < 0.6  # gray: equal channels
    expected = digits.train.images[:, 0].double().div(255)
    assert digits.mean[0] == pytest.approx(expected.mean().item(), rel=1e-6)
    assert digits.std[0] == pytest.approx(expected.std(unbiased=False).item(), rel=1e-6)


def test_digits_read_from_the_shipped_file_are_scikit_learns_and_its_loader_is_the_fallback(monkeypatch) -> None:
    from sklearn.datasets import load_digits

    import raytailor.data.digits as digits_module

    bunch = load_digits()
    pixels, labels = digits_module._digits_arrays()
    assert np.array_equal(pixels, bunch.images) and np.array_equal(labels, bunch.target)
    # scikit-learn moving its file: the search still reads the digits, through the loader
    monkeypatch.setattr(digits_module.importlib.util, "find_spec", lambda name: None)
    pixels, labels = digits_module._digits_arrays()
    assert np.array_equal(pixels, bunch.images) and np.array_equal(labels, bunch.target)


def test_splits_are_stratified(digits: Splits) -> None:
    for split in (digits.train, digits.val, digits.test):
        counts = torch.bincount(split.labels, minlength=10)
        assert (counts > 0).all()
        share = counts.double() / len(split)
        assert (share - 0.1).abs().max() < 0.03  # digits is balanced, so every split is too


def test_splits_are_disjoint_and_seeded() -> None:
    args = dict(dataset="synthetic", image_size=16, seed=3, num_classes=4, samples_per_class=40)
    first, again = load_splits(**args), load_splits(**args)
    hashes = [_hashes(s) for s in (first.train, first.val, first.test)]
    assert sum(len(h) for h in hashes) == 160  # every noisy image is unique: nothing lost
    train, val, test = hashes
    assert not (train & val) and not (train & test) and not (val & test)
    for a, b in ((first.train, again.train), (first.val, again.val), (first.test, again.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_other_seed_gives_other_split(digits: Splits) -> None:
    same = load_splits(dataset="digits", image_size=16, seed=0)
    other = load_splits(dataset="digits", image_size=16, seed=1)
    assert torch.equal(same.val.images, digits.val.images)
    assert torch.equal(same.test.labels, digits.test.labels)
    assert not torch.equal(other.test.images, digits.test.images[: len(other.test)])
    assert _hashes(other.val) != _hashes(digits.val)


def test_stratified_carve_indices_partition_and_cover() -> None:
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 2 + [3] * 1)
    kept, carved = stratified_carve(labels, fraction=0.2, seed=0, stream=STREAM_VAL)
    assert set(kept.tolist()).isdisjoint(carved.tolist())
    assert sorted(kept.tolist() + carved.tolist()) == list(range(len(labels)))
    assert torch.bincount(labels[carved], minlength=4).tolist() == [2, 1, 1, 0]  # >=1 when possible
    again, _ = stratified_carve(labels, fraction=0.2, seed=0, stream=STREAM_VAL)
    other = [
        stratified_carve(labels, fraction=0.2, seed=s, stream=STREAM_VAL)[1] for s in range(1, 6)
    ]
    assert torch.equal(kept, again)
    assert any(not torch.equal(carved, o) for o in other)


def test_num_classes_and_samples_per_class_caps(digits: Splits) -> None:
    capped = load_splits(
        dataset="digits", image_size=16, seed=0, num_classes=3, samples_per_class=10
    )
    assert capped.num_classes == 3 and capped.class_names == ["0", "1", "2"]
    for split in (capped.train, capped.val, capped.test):
        assert split.labels.max() < 3
    pool = torch.bincount(torch.cat([capped.train.labels, capped.val.labels]), minlength=3)
    assert pool.tolist() == [10, 10, 10]  # train source capped per class
    assert torch.bincount(capped.val.labels).tolist() == [1, 1, 1]
    # The test split is carved before capping, so it is the same as without the caps.
    uncapped_test = digits.test.labels[digits.test.labels < 3]
    assert torch.equal(capped.test.labels, uncapped_test)


# --- synthetic ----------------------------------------------------------------------------


def test_synthetic_shapes_classes_and_determinism() -> None:
    splits = load_splits(dataset="synthetic", image_size=32, seed=0)
    for split in (splits.train, splits.val, splits.test):
        _check_split_tensors(split, 32)
    assert splits.num_classes == 10 and len(splits.class_names) == 10
    assert len(splits.train) + len(splits.val) + len(splits.test) == 2000
    assert "stripes_horizontal" in splits.class_names and "9" not in splits.class_names
    a, _ = generate(num_classes=3, samples_per_class=5, image_size=16, seed=7)
    b, _ = generate(num_classes=3, samples_per_class=5, image_size=16, seed=7)
    c, _ = generate(num_classes=3, samples_per_class=5, image_size=16, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Colourful, not gray, and not constant.
    assert not torch.equal(a[:, 0], a[:, 1]) and a.float().std() > 20


def test_synthetic_generation_shapes_and_balance() -> None:
    images, labels = generate(num_classes=10, samples_per_class=200, image_size=32, seed=1)
    assert images.shape == (2000, 3, 32, 32)
    assert torch.bincount(labels).tolist() == [200] * 10


def test_synthetic_classes_differ_on_average() -> None:
    images, labels = generate(num_classes=10, samples_per_class=100, image_size=32, seed=0)
    # A nearest-class-mean rule on gradient energy maps beats chance: the classes carry signal.
    x = images.float().mean(1)  # N x S x S, gray
    feats = torch.stack(
        [
            (x[:, 1:, :] - x[:, :-1, :]).abs().mean((1, 2)),  # vertical gradient energy
            (x[:, :, 1:] - x[:, :, :-1]).abs().mean((1, 2)),  # horizontal gradient energy
        ],
        dim=1,
    )
    means = torch.stack([feats[labels == c].mean(0) for c in range(10)])
    predicted = torch.cdist(feats, means).argmin(1)
    assert (predicted == labels).float().mean() > 0.2  # chance is 0.1


def test_synthetic_rejects_too_many_classes() -> None:
    with pytest.raises(DataError, match="num_classes"):
        load_splits(dataset="synthetic", image_size=16, num_classes=50)


# --- imagefolder --------------------------------------------------------------------------

_COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def _write_class_images(folder, count: int, size=(20, 12)) -> None:
    for name, colour in _COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", size, colour).save(folder / name / f"{i}.png")


def test_imagefolder_flat_layout(tmp_path) -> None:
    _write_class_images(tmp_path, 6)
    (tmp_path / "notes").mkdir()  # a folder without images is not a class
    (tmp_path / "notes" / "readme.txt").write_text("not an image")
    splits = load_splits(dataset="imagefolder", root=str(tmp_path), image_size=8, seed=0)
    assert splits.class_names == ["blue", "green", "red"] and splits.num_classes == 3
    assert len(splits.train) + len(splits.val) + len(splits.test) == 18
    for split in (splits.train, splits.val, splits.test):
        _check_split_tensors(split, 8)
        assert torch.bincount(split.labels, minlength=3).min() >= 1
        for image, label in zip(split.images, split.labels):
            colour = _COLOURS[splits.class_names[label]]
            assert image[:, 4, 4].tolist() == list(colour)


def test_a_one_class_folder_is_refused(tmp_path) -> None:
    """A teacher at "100 %" on one class would make every model feasible and teach nothing."""
    (tmp_path / "only").mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / "only" / f"{i}.png")
    with pytest.raises(DataError, match="has 1 class with training images; a task needs at least two"):
        load_splits(dataset="imagefolder", root=str(tmp_path), image_size=8, seed=0)


def test_imagefolder_crops_the_centre(tmp_path) -> None:
    image = np.zeros((10, 30, 3), dtype=np.uint8)  # H x W x 3: a wide image
    image[:, :10] = (255, 0, 0)  # left third red, centre black, right third blue
    image[:, 20:] = (0, 0, 255)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(image).save(tmp_path / name / f"{i}.png")
    splits = load_splits(dataset="imagefolder", root=str(tmp_path), image_size=10)
    assert splits.train.images.max() == 0  # the centred 10x10 crop is all black


def test_imagefolder_train_test_layout(tmp_path) -> None:
    _write_class_images(tmp_path / "train", 8)
    _write_class_images(tmp_path / "test", 3, size=(9, 9))
    splits = load_splits(dataset="imagefolder", root=str(tmp_path), image_size=8, test_fraction=0.5)
    assert len(splits.test) == 9  # the official test folder, test_fraction ignored
    assert torch.bincount(splits.test.labels).tolist() == [3, 3, 3]
    assert len(splits.train) + len(splits.val) == 24
    assert torch.bincount(splits.val.labels, minlength=3).min() >= 1


def test_imagefolder_errors(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="data.root") as info:
        load_splits(dataset="imagefolder", root=str(missing), image_size=8)
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="no class folders"):
        load_splits(dataset="imagefolder", root=str(tmp_path), image_size=8)
    with pytest.raises(DataError, match="needs a root"):
        load_splits(dataset="imagefolder", image_size=8)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_splits(dataset="imagefolder", root=str(tmp_path), image_size=8)


# --- torchvision datasets on fake files ---------------------------------------------------


@pytest.fixture
def no_md5(monkeypatch):
    """Accept any present file: torchvision checks md5 sums of the real archives."""
    from raytailor._torchvision import torchvision

    def present(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", present)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", present)
    monkeypatch.setattr(torchvision.datasets.flowers102, "check_integrity", present)
    return torchvision


def _fake_cifar10(root, per_batch: int = 8) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)  # N x (C*H*W)
        labels = [i % 10 for i in range(per_batch)]
        first = data if first is None else first
        with open(folder / name, "wb") as file:
            pickle.dump({"data": data, "labels": labels}, file)
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": names}, file)
    return first


def test_cifar10_from_fake_files(tmp_path, no_md5) -> None:
    first = _fake_cifar10(tmp_path, per_batch=20)
    splits = load_splits(dataset="cifar10", root=str(tmp_path), image_size=32, val_fraction=0.2)
    assert splits.class_names[:2] == ["airplane", "automobile"] and splits.num_classes == 10
    assert len(splits.test) == 20 and len(splits.train) + len(splits.val) == 100
    assert len(splits.val) == 20  # two per class, stratified
    assert torch.bincount(splits.val.labels).tolist() == [2] * 10
    # CHW layout preserved: data_batch_1[0] comes back unchanged at image_size 32.
    train_pool = torch.cat([splits.train.images, splits.val.images])
    expected = torch.from_numpy(first[0].reshape(3, 32, 32))  # C x H x W
    assert any(torch.equal(image, expected) for image in train_pool)
    small = load_splits(dataset="cifar10", root=str(tmp_path), image_size=16, num_classes=2)
    _check_split_tensors(small.test, 16)
    assert small.class_names == ["airplane", "automobile"] and small.test.labels.max() == 1


def test_cifar10_missing_or_failed_download(tmp_path, monkeypatch) -> None:
    with pytest.raises(DataError, match="dataset cifar10 not found under") as info:
        load_splits(dataset="cifar10", root=str(tmp_path), image_size=32)
    assert "data.download=true" in str(info.value) and str(tmp_path) in str(info.value)
    from raytailor._torchvision import torchvision

    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(DataError, match="failed to download into"):
        load_splits(dataset="cifar10", root=str(tmp_path), image_size=32, download=True)


def test_svhn_from_fake_files(tmp_path, no_md5) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    for name, count in (("train_32x32.mat", 30), ("test_32x32.mat", 10)):
        x = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)  # H x W x C x N
        y = (np.arange(count) % 10 + 1).reshape(-1, 1)  # SVHN stores digit 0 as 10
        savemat(tmp_path / name, {"X": x, "y": y})
    splits = load_splits(dataset="svhn", root=str(tmp_path), image_size=16)
    assert len(splits.test) == 10 and len(splits.train) + len(splits.val) == 30
    assert sorted(splits.test.labels.tolist()) == list(range(10))  # 10 -> 0
    _check_split_tensors(splits.train, 16)
    assert default_flip("svhn") is False


# --- loader -------------------------------------------------------------------------------


def _split(count: int = 10, size: int = 16, value: int | None = None) -> TensorSplit:
    if value is None:
        images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8)
    else:
        images = torch.full((count, 3, size, size), value, dtype=torch.uint8)
    return TensorSplit(images, torch.arange(count, dtype=torch.int64))


def test_loader_batch_count_and_order() -> None:
    split = _split(10)
    loader = TensorLoader(split, batch_size=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(10))  # no shuffle: in order
    dropping = TensorLoader(split, batch_size=4, mean=(0.5,) * 3, std=(0.25,) * 3, drop_last=True)
    assert len(dropping) == 2 and len(list(dropping)) == 2


def test_loader_normalises() -> None:
    loader = TensorLoader(
        _split(6, value=51), batch_size=6, mean=(0.2, 0.1, 0.0), std=(0.5, 0.25, 2.0)
    )
    images, labels = next(iter(loader))
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.shape == (6, 3, 16, 16)
    per_channel = images.mean(dim=(0, 2, 3))  # 51/255 = 0.2
    assert torch.allclose(per_channel, torch.tensor([0.0, 0.4, 0.1]), atol=1e-6)


def test_loader_shuffle_is_a_seeded_permutation_per_epoch() -> None:
    split = _split(50)
    args = dict(batch_size=8, mean=(0.5,) * 3, std=(0.5,) * 3, shuffle=True, seed=1)
    loader = TensorLoader(split, **args)
    epoch0 = torch.cat([y for _, y in loader])
    epoch1 = torch.cat([y for _, y in loader])  # passes advance the epoch
    assert sorted(epoch0.tolist()) == list(range(50)) and sorted(epoch1.tolist()) == list(range(50))
    assert not torch.equal(epoch0, epoch1) and epoch0.tolist() != list(range(50))
    fresh = TensorLoader(split, **args)
    fresh.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in fresh]), epoch1)


def test_augmentation_shape_epochs_and_reproducibility() -> None:
    split = _split(32, size=16)
    args = dict(batch_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, augment=True, flip=True, seed=5)
    loader = TensorLoader(split, **args)
    loader.set_epoch(0)
    first, _ = next(iter(loader))
    loader.set_epoch(1)
    second, _ = next(iter(loader))
    again = TensorLoader(split, **args)
    again.set_epoch(1)
    repeat, _ = next(iter(again))
    plain, _ = next(iter(TensorLoader(split, batch_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)))
    assert first.shape == second.shape == plain.shape == (32, 3, 16, 16)
    assert not torch.equal(first, second) and not torch.equal(first, plain)
    assert torch.equal(second, repeat)
    other_seed = TensorLoader(split, **{**args, "seed": 6})
    other_seed.set_epoch(1)
    assert not torch.equal(next(iter(other_seed))[0], second)


def _ramp_split(count: int, size: int) -> TensorSplit:
    ramp = (torch.arange(size) * 10 + 50).to(torch.uint8)  # grows left to right
    images = ramp.expand(count, 3, size, size).contiguous()
    return TensorSplit(images, torch.zeros(count, dtype=torch.int64))


def _mirrored(images: torch.Tensor) -> torch.Tensor:
    """Per image: True if the non-padded pixels of row S/2 decrease left to right."""
    row = images[:, 0, images.shape[2] // 2]  # B x S
    steps = []
    for values in row:
        kept = values[values > 0]
        steps.append(bool((kept[1:] < kept[:-1]).all()) and len(kept) > 1)
    return torch.tensor(steps)


def test_flip_only_when_asked() -> None:
    split = _ramp_split(64, 16)
    kwargs = dict(batch_size=64, mean=(0.0,) * 3, std=(1 / 255,) * 3, augment=True)
    unflipped, _ = next(iter(TensorLoader(split, flip=False, **kwargs)))
    flipped, _ = next(iter(TensorLoader(split, flip=True, **kwargs)))
    assert not _mirrored(unflipped).any()
    share = _mirrored(flipped).float().mean().item()
    assert 0.2 < share < 0.8  # p = 0.5 per sample
    # Crops shift by up to image_size // 8 = 2 pixels, padding with zeros.
    assert (unflipped == 0).any()
    assert set(unflipped[:, 0, 8].flatten().tolist()) <= {0.0} | {50.0 + 10 * i for i in range(16)}


def test_crop_flip_exact() -> None:
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    centre = torch.tensor([1, 1])
    flips = torch.tensor([False, True])
    same = crop_flip(images, padding=1, offset_y=centre, offset_x=centre, flips=flips)
    assert torch.equal(same[0], images[0]) and torch.equal(same[1], images[1].flip(-1))
    shifted = crop_flip(
        images, padding=1, offset_y=torch.tensor([0, 2]), offset_x=torch.tensor([0, 1]),
        flips=torch.tensor([False, False]),
    )
    # offset (0, 0): the image moves down-right by the padding; zeros enter top and left.
    assert shifted[0, 0, 0].tolist() == [0, 0, 0, 0] and shifted[0, 0, :, 0].tolist() == [0] * 4
    assert torch.equal(shifted[0, 0, 1:, 1:], images[0, 0, :3, :3])
    # offset (2, 1): the image moves up by one row; zeros enter at the bottom.
    assert torch.equal(shifted[1, 0, :3], images[1, 0, 1:])
    assert shifted[1, 0, 3].tolist() == [0, 0, 0, 0]


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dataset="mnist"), "unknown dataset 'mnist'; use one of digits, synthetic"),
        (dict(dataset="digits", image_size=4), "image_size must be an integer >= 8, got 4"),
        (dict(dataset="digits", val_fraction=1.0), r"val_fraction must be in \[0, 1\)"),
        (dict(dataset="digits", test_fraction=-0.1), r"test_fraction must be in \[0, 1\)"),
        (dict(dataset="digits", test_fraction=0.0), "test_fraction must be > 0"),
        (dict(dataset="digits", val_fraction=0.0), "val_fraction must be > 0"),
        (dict(dataset="digits", num_classes=11), "num_classes=11 exceeds the 10 classes"),
        (dict(dataset="digits", samples_per_class=0), "samples_per_class must be a positive"),
        (dict(dataset="digits", seed=-1), "seed must be a non-negative integer"),
        (dict(dataset="synthetic", samples_per_class=1), "split is empty"),
    ],
)
def test_bad_inputs_raise_data_error(kwargs, match) -> None:
    kwargs = {"image_size": 16, **kwargs}
    with pytest.raises(DataError, match=match) as info:
        load_splits(**kwargs)
    assert "\n" not in str(info.value)


def test_default_flip_and_known_datasets() -> None:
    assert set(KNOWN_DATASETS) == {
        "digits", "synthetic", "imagefolder", "svhn", "flowers102", "cifar10", "cifar100", "dtd",
    }
    assert [default_flip(d) for d in ("digits", "svhn", "synthetic")] == [False] * 3
    flippable = ("cifar10", "cifar100", "flowers102", "dtd", "imagefolder")
    assert [default_flip(d) for d in flippable] == [True] * 5
    with pytest.raises(DataError, match="unknown dataset"):
        default_flip("imagenet")


def test_tensor_split_and_loader_validate() -> None:
    with pytest.raises(DataError, match="uint8"):
        TensorSplit(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match="labels"):
        TensorSplit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError, match="batch_size"):
        TensorLoader(_split(4), batch_size=0, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(DataError, match="std > 0"):
        TensorLoader(_split(4), batch_size=2, mean=(0.5,) * 3, std=(0.5, 0.0, 0.5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loader_on_cuda_matches_cpu() -> None:
    split = _split(40, size=16)
    args = dict(
        batch_size=16, mean=(0.5,) * 3, std=(0.5,) * 3, shuffle=True, augment=True, flip=True
    )
    cpu = list(TensorLoader(split, **args))
    gpu = list(TensorLoader(split, device="cuda", **args))
    assert all(x.device.type == "cuda" and y.device.type == "cuda" for x, y in gpu)
    for (xc, yc), (xg, yg) in zip(cpu, gpu):  # draws come from a CPU generator: same batches
        assert torch.equal(yc, yg.cpu()) and torch.allclose(xc, xg.cpu())


def test_dtd_merges_train_and_val_from_fake_files(tmp_path) -> None:
    data = tmp_path / "dtd" / "dtd"
    lines = {"train": [], "val": [], "test": []}
    for cls, colour in (("banded", (200, 0, 0)), ("dotted", (0, 0, 200))):
        (data / "images" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (12, 9), colour).save(data / "images" / cls / f"{cls}_{i}.jpg")
            split = ("train", "train", "val", "val", "test", "test")[i]
            lines[split].append(f"{cls}/{cls}_{i}.jpg")
    (data / "labels").mkdir()
    for split, entries in lines.items():
        (data / "labels" / f"{split}1.txt").write_text("\n".join(entries) + "\n")
    splits = load_splits(dataset="dtd", root=str(tmp_path), image_size=8, val_fraction=0.25)
    assert splits.class_names == ["banded", "dotted"]
    assert len(splits.test) == 4 and len(splits.train) + len(splits.val) == 8  # train + val
    assert torch.bincount(splits.val.labels).tolist() == [1, 1]
    red = splits.test.images[splits.test.labels == 0].float()[:, 0].mean()
    assert red > 150  # jpeg keeps the colour roughly


def test_flowers102_from_fake_files(tmp_path, no_md5) -> None:
    from scipy.io import savemat

    base = tmp_path / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    for image_id in range(1, 13):
        image = Image.new("RGB", (10, 14), (image_id * 20, 0, 0))
        image.save(base / "jpg" / f"image_{image_id:05d}.jpg")
    savemat(base / "imagelabels.mat", {"labels": np.array([1, 2] * 6)})  # 1-based labels
    ids = {"trnid": np.arange(1, 5), "valid": np.arange(5, 9), "tstid": np.arange(9, 13)}
    savemat(base / "setid.mat", ids)
    splits = load_splits(dataset="flowers102", root=str(tmp_path), image_size=8, num_classes=2)
    assert splits.class_names == ["pink primrose", "hard-leaved pocket orchid"]
    assert len(splits.test) == 4 and len(splits.train) + len(splits.val) == 8
    assert sorted(splits.test.labels.tolist()) == [0, 0, 1, 1]
