"""A procedural, seeded shapes-and-textures task: the SOURCE task for pre-training demo backbones.

Each class is a shape (disk, square, triangle, ...) or a texture (stripes, checker, dots) drawn
with random position, scale, rotation, thickness, colours, background gradient and pixel noise.
It shares nothing with digits (no glyphs), so tailoring a backbone pre-trained on it to digits is
a genuine transfer. Rendering is vectorised over images with numpy; only the class loop is Python.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from raytailor.data.containers import SourceData
from raytailor.errors import DataError

CLASS_NAMES = [
    "disk",
    "square",
    "triangle",
    "cross",
    "ring",
    "stripes_horizontal",
    "stripes_vertical",
    "stripes_diagonal",
    "checker",
    "dots",
    "square_outline",
    "crescent",
]
DEFAULT_NUM_CLASSES = 10
DEFAULT_SAMPLES_PER_CLASS = 200
_CHUNK = 512  # images rendered at once: bounds the N x S x S float temporaries
_JITTER = np.deg2rad(12.0)  # texture orientation noise; keeps horizontal/vertical/diagonal apart

Params = dict[str, np.ndarray]  # per-image parameters, each of shape (n,)
Grid = tuple[np.ndarray, np.ndarray]  # x, y pixel centres in [-1, 1], each 1 x S x S


def read_synthetic(
    *, image_size: int, seed: int, num_classes: int | None, samples_per_class: int | None
) -> SourceData:
    """Generate ``samples_per_class`` images of each of the first ``num_classes`` classes."""
    classes = DEFAULT_NUM_CLASSES if num_classes is None else num_classes
    per_class = DEFAULT_SAMPLES_PER_CLASS if samples_per_class is None else samples_per_class
    if not 2 <= classes <= len(CLASS_NAMES):
        raise DataError(
            f"synthetic num_classes must be in [2, {len(CLASS_NAMES)}], got {classes}; "
            "pick a value in that range"
        )
    images, labels = generate(
        num_classes=classes, samples_per_class=per_class, image_size=image_size, seed=seed
    )
    return SourceData(
        train_images=images, train_labels=labels, class_names=CLASS_NAMES[:classes]
    )


def generate(
    *, num_classes: int, samples_per_class: int, image_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images N x 3 x S x S and int64 labels N (class-sorted), deterministic for ``seed``."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    labels = np.repeat(np.arange(num_classes), samples_per_class)
    params = _draw_params(rng, labels, image_size)
    grid = _grid(image_size)
    out = np.empty((len(labels), image_size, image_size, 3), dtype=np.uint8)  # N x S x S x 3
    for start in range(0, len(labels), _CHUNK):
        part = slice(start, start + _CHUNK)
        chunk = {name: values[part] for name, values in params.items()}
        out[part] = _render(rng, labels[part], chunk, grid)
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()  # N x 3 x S x S
    return images, torch.from_numpy(labels.astype(np.int64))


def _grid(size: int) -> Grid:
    centres = ((np.arange(size) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    return centres[None, None, :], centres[None, :, None]  # x varies along W, y along H


def _draw_params(rng: np.random.Generator, labels: np.ndarray, size: int) -> Params:
    n = len(labels)

    def u(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, n).astype(np.float32)  # n

    fg = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    # Background at least 0.3 away from the foreground in every channel (cyclically).
    bg = np.mod(fg + 0.5 + rng.uniform(-0.2, 0.2, (n, 3)), 1.0).astype(np.float32)
    period_px = u(max(3.0, 0.1 * size), max(3.5, 0.22 * size))
    diagonal = np.where(rng.random(n) < 0.5, np.pi / 4, -np.pi / 4).astype(np.float32)
    return {
        "cx": u(-0.35, 0.35),
        "cy": u(-0.35, 0.35),
        "radius": u(0.35, 0.65),  # shapes: circumradius; textures: window half-size = 1.5x
        "angle": u(0.0, 2 * np.pi),  # shapes: any rotation
        "jitter": u(-_JITTER, _JITTER) + np.where(labels == 7, diagonal, 0.0).astype(np.float32),
        "thickness": u(0.18, 0.32),
        "period": period_px * (2.0 / size),
        "phase": u(0.0, 1.0),
        "grad_angle": u(0.0, 2 * np.pi),
        "grad_amp": u(0.0, 0.15),
        "noise": u(0.02, 0.08),
        "fg_r": fg[:, 0], "fg_g": fg[:, 1], "fg_b": fg[:, 2],
        "bg_r": bg[:, 0], "bg_g": bg[:, 1], "bg_b": bg[:, 2],
    }


def _col(values: np.ndarray) -> np.ndarray:
    return values[:, None, None]  # (n,) -> n x 1 x 1, broadcasts against n x S x S


def _local(p: Params, grid: Grid, angle: np.ndarray, scale: np.ndarray) -> Grid:
    """Pixel coordinates in each image's rotated, scaled frame: two n x S x S arrays."""
    x, y = grid
    dx, dy = x - _col(p["cx"]), y - _col(p["cy"])
    cos, sin = _col(np.cos(angle)), _col(np.sin(angle))
    return (cos * dx + sin * dy) / _col(scale), (-sin * dx + cos * dy) / _col(scale)


def _shape_frame(p: Params, grid: Grid) -> Grid:
    return _local(p, grid, p["angle"], p["radius"])


def _disk(p: Params, grid: Grid) -> np.ndarray:
    u, v = _shape_frame(p, grid)
    return u * u + v * v < 1.0


def _square(p: Params, grid: Grid) -> np.ndarray:
    u, v = _shape_frame(p, grid)
    return np.maximum(np.abs(u), np.abs(v)) < 0.8


def _triangle(p: Params, grid: Grid) -> np.ndarray:
    u, v = _shape_frame(p, grid)
    inside = np.ones(u.shape, dtype=bool)
    for normal in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        inside &= u * np.cos(normal) + v * np.sin(normal) < 0.5  # equilateral, inradius 0.5
    return inside


def _cross(p: Params, grid: Grid) -> np.ndarray:
    u, v = _shape_frame(p, grid)
    half = _col(p["thickness"])
    au, av = np.abs(u), np.abs(v)
    return ((au < half) & (av < 1.0)) | ((av < half) & (au < 1.0))


def _ring(p: Params, grid: Grid) -> np.ndarray:
    u, v = _shape_frame(p, grid)
    return np.abs(np.sqrt(u * u + v * v) - 0.75) < _col(p["thickness"])


def _square_outline(p: Params, grid: Grid) -> np.ndarray:
    u, v = _shape_frame(p, grid)
    extent = np.maximum(np.abs(u), np.abs(v))
    return (extent < 0.85) & (extent > 0.85 - 1.5 * _col(p["thickness"]))


def _crescent(p: Params, grid: Grid) -> np.ndarray:
    u, v = _shape_frame(p, grid)
    return (u * u + v * v < 1.0) & ((u - 0.5) ** 2 + v * v > 0.75**2)


def _texture_frame(p: Params, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texture coordinates in periods (a, b) and the square window the texture fills."""
    x, y = grid
    window = np.maximum(np.abs(x - _col(p["cx"])), np.abs(y - _col(p["cy"])))
    a, b = _local(p, grid, p["jitter"], p["period"])
    return a + _col(p["phase"]), b + _col(p["phase"]), window < 1.5 * _col(p["radius"])


def _stripes(p: Params, grid: Grid) -> np.ndarray:
    _, b, window = _texture_frame(p, grid)
    return window & (np.mod(b, 1.0) < 0.5)  # bands of constant b: horizontal before rotation


def _stripes_vertical(p: Params, grid: Grid) -> np.ndarray:
    a, _, window = _texture_frame(p, grid)
    return window & (np.mod(a, 1.0) < 0.5)


def _checker(p: Params, grid: Grid) -> np.ndarray:
    a, b, window = _texture_frame(p, grid)
    return window & ((np.floor(a) + np.floor(b)) % 2 == 0)


def _dots(p: Params, grid: Grid) -> np.ndarray:
    a, b, window = _texture_frame(p, grid)
    da, db = np.mod(a, 1.0) - 0.5, np.mod(b, 1.0) - 0.5
    return window & (da * da + db * db < 0.3**2)


_MASKS: list[Callable[[Params, Grid], np.ndarray]] = [
    _disk,
    _square,
    _triangle,
    _cross,
    _ring,
    _stripes,  # horizontal: jitter only
    _stripes_vertical,
    _stripes,  # diagonal: jitter includes +-45 degrees
    _checker,
    _dots,
    _square_outline,
    _crescent,
]


def _render(rng: np.random.Generator, labels: np.ndarray, p: Params, grid: Grid) -> np.ndarray:
    """n x S x S x 3 uint8 images for one chunk."""
    x, y = grid
    n, size = len(labels), x.shape[-1]
    mask = np.zeros((n, size, size), dtype=bool)
    for cls in np.unique(labels):
        rows = labels == cls
        mask[rows] = _MASKS[cls]({k: v[rows] for k, v in p.items()}, grid)
    fg = np.stack([p["fg_r"], p["fg_g"], p["fg_b"]], axis=1)[:, None, None, :]  # n x 1 x 1 x 3
    bg = np.stack([p["bg_r"], p["bg_g"], p["bg_b"]], axis=1)[:, None, None, :]
    image = np.where(mask[..., None], fg, bg)  # n x S x S x 3
    ramp = np.cos(_col(p["grad_angle"])) * x + np.sin(_col(p["grad_angle"])) * y  # n x S x S
    image = image + (_col(p["grad_amp"]) * ramp)[..., None]
    noise = rng.standard_normal(image.shape, dtype=np.float32)  # n x S x S x 3
    image = image + noise * p["noise"][:, None, None, None]
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
