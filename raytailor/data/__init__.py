"""Datasets as in-memory uint8 tensors, seeded stratified splits, and a device-side loader.

``load_splits`` reads a dataset by name into :class:`Splits`; :class:`TensorLoader` turns one
:class:`TensorSplit` into normalised (and optionally augmented) batches on any device.
"""

from raytailor.data.containers import Splits, TensorSplit
from raytailor.data.load import KNOWN_DATASETS, default_flip, load_splits
from raytailor.data.loader import TensorLoader

__all__ = [
    "KNOWN_DATASETS",
    "Splits",
    "TensorLoader",
    "TensorSplit",
    "default_flip",
    "load_splits",
]
