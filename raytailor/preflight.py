"""What can be checked before any work: run by ``tailor`` and ``search`` before they write a
file, start Ray or train anything, so that bad input costs one line and leaves nothing behind.

The spec itself is checked when it is loaded (``spec.py``); the data and the backbone weights
are checked by loading them (``run.prepare``), which both commands do first. What remains is
here: the output folder, the device, and hyper-parameter values the backbone cannot take.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from raytailor.backbones import BlockNetwork
from raytailor.errors import SpecError
from raytailor.spec import Spec


def check_output(out_dir: Path, *, option: str = "--out") -> None:
    """``out_dir`` is, or can be made, a folder we can write into."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SpecError(f"{option} {out_dir} is a file, not a folder; choose another {option}")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SpecError(f"{option} {out_dir} cannot be made: {existing} is a file; choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError(f"{option} {out_dir} cannot be written: {existing} is read-only or not ours; "
                        f"choose another {option}")


def check_device(spec: Spec) -> None:
    """The spec's device exists on this machine (for ``tailor``, and for a search on a private
    Ray instance, which is this machine; a cluster's workers are not checked from the head)."""
    if not spec.device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise SpecError(f"device {spec.device} asked, but this machine has no CUDA device; "
                        "use device: auto or cpu, or run on a GPU machine")
    index = int(spec.device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise SpecError(f"device {spec.device} asked, but this machine has {torch.cuda.device_count()} CUDA "
                        f"device(s); use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")


def check_hyperparameters(spec: Spec, backbone: BlockNetwork) -> None:
    """Every value the run or search may use fits the backbone (the method says what fits)."""
    from raytailor.methods import get_method

    get_method(spec.method).check(spec.possible_values(), backbone)
