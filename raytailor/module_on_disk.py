"""Trained modules that wait in files, not in host memory, until they are needed.

A method that yields many sub-models (TransTailor's chain: one whole network per step) keeps
each in a private temporary folder as safetensors with a way to build its empty shape again;
``run.py`` loads them one at a time to measure and save them. At ResNet-34 size each step is
about 85 MB, so a trial's chain of ten no longer holds close to a gigabyte of host memory per
trial for its whole run. The folder goes when the last handle to it does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


class ModuleShelf:
    """A private temporary folder that keeps modules (``keep``) for as long as a handle lives."""

    def __init__(self, prefix: str = "raytailor-") -> None:
        self._folder = tempfile.TemporaryDirectory(prefix=prefix)  # removed when garbage-collected
        self._count = 0

    def keep(self, module: nn.Module, build: Callable[[], nn.Module]) -> ModuleOnDisk:
        """Write ``module``'s state; ``build()`` must give an empty module it loads into strictly."""
        from safetensors.torch import save_file

        path = Path(self._folder.name) / f"{self._count}.safetensors"
        self._count += 1
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(path))
        return ModuleOnDisk(path, build, self)


@dataclass(frozen=True, eq=False)
class ModuleOnDisk:
    path: Path
    build: Callable[[], nn.Module]
    shelf: ModuleShelf  # keeps the folder alive while this handle is

    def load(self, device: str | torch.device = "cpu") -> nn.Module:
        """A fresh module in eval mode with the kept weights, on ``device``."""
        from safetensors.torch import load_file

        module = self.build()
        module.load_state_dict(load_file(str(self.path), device=str(device)), strict=True)
        return module.to(device).eval()


def loaded(module: nn.Module | ModuleOnDisk, device: str | torch.device = "cpu") -> nn.Module:
    """The module itself, or the kept one loaded."""
    return module.load(device) if isinstance(module, ModuleOnDisk) else module
