"""Training that survives a dead process: every ``fit`` of a run leaves its state in a folder,
and the same run started again on that folder continues where the state ends.

A run is a fixed sequence of ``fit`` calls (stages: NetTailor's student and fine-tunes,
TransTailor's classifier, factors and fine-tunes); between them it computes, deterministically,
from what the stages trained (pruning, importance, surgery). So a restarted run replays that
sequence: a stage that had finished loads its final tensors instead of training, the stage that
was cut short loads its last saved epoch (tensors, optimizer state) and trains the epochs left,
and everything between stages is computed again from the same tensors. Shuffling and
augmentation are a function of (seed, epoch) (``data/loader.py``), so the continued run ends
with what the uninterrupted one would have.

What is saved of a stage's module: the parameters it trains and every buffer (the frozen
pre-trained weights are rebuilt by the run itself), by name, as safetensors; the SGD momentum
per trained parameter; a JSON index. Nothing is pickled.

``fit`` finds the folder of the run it belongs to through ``resumable(checkpoints)`` (the search
trial opens it around the whole run); outside one it trains as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

INDEX = "stages.json"


class StageCheckpoints:
    """The stages of one run in ``folder``; ``every``: save the running stage each ``every``
    epochs (its last epoch is always saved; 0: only the last). ``saved`` turns True at each save
    (the search trial hands the folder to Ray Tune with that epoch's report, then clears it)."""

    def __init__(self, folder: str | os.PathLike, *, every: int = 1) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.every = every
        index = self.folder / INDEX
        self.stages: list[dict[str, Any]] = json.loads(index.read_text())["stages"] if index.is_file() else []
        self._next = 0  # the index of the next fit call of this run
        self.saved = False  # a save happened since the caller last looked (see on_save)

    @property
    def trained_epochs(self) -> int:
        """Training epochs the saved stages hold (a restarted run's count starts here)."""
        return sum(stage["epoch"] for stage in self.stages)

    def begin(self, stage: str, epochs: int) -> tuple[int, dict[str, Any] | None]:
        """The next fit call: its index and what was saved of it (None: train from the start)."""
        index, self._next = self._next, self._next + 1
        saved = self.stages[index] if index < len(self.stages) else None
        if saved is not None and (saved["stage"], saved["epochs"]) != (stage, epochs):  # not this run's
            del self.stages[index:]
            saved = None
        return index, saved

    def load(self, index: int, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        """Put stage ``index``'s saved tensors into ``model`` (and its momentum into ``optimizer``)."""
        from safetensors.torch import load_file

        device = next(model.parameters()).device
        tensors = load_file(self.folder / f"stage_{index}.safetensors", device=str(device))
        state = model.state_dict()
        missing = [name for name in tensors if name not in state]
        if missing:
            raise RuntimeError(f"stage {index} checkpoint does not fit the model: {missing[:3]}")
        with torch.no_grad():
            for name, value in tensors.items():
                state[name].copy_(value)
        if optimizer is None:
            return
        momentum_file = self.folder / f"stage_{index}_momentum.safetensors"
        momentum = load_file(momentum_file, device=str(device)) if momentum_file.is_file() else {}
        for name, param in model.named_parameters():
            if name in momentum:
                optimizer.state[param]["momentum_buffer"] = momentum[name].clone()

    def save(self, index: int, *, stage: str, epoch: int, epochs: int, model: nn.Module,
             optimizer: torch.optim.Optimizer, metrics: dict[str, float]) -> None:
        """Save stage ``index`` after ``epoch`` of ``epochs`` when it is due."""
        if epoch < epochs and (self.every <= 0 or epoch % self.every):
            return
        from safetensors.torch import save_file

        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        kept = trained | {name for name, _ in model.named_buffers()}
        tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items() if name in kept}
        momentum = {name: optimizer.state[p]["momentum_buffer"].detach().contiguous().cpu()
                    for name, p in model.named_parameters()
                    if name in trained and optimizer.state.get(p, {}).get("momentum_buffer") is not None}
        _atomic(self.folder / f"stage_{index}.safetensors", lambda path: save_file(tensors, path))
        _atomic(self.folder / f"stage_{index}_momentum.safetensors", lambda path: save_file(momentum, path))
        record = {"stage": stage, "epoch": epoch, "epochs": epochs, "metrics": metrics}
        self.stages[index:] = [record]  # a stage after this one belongs to an older attempt
        _atomic(self.folder / INDEX, lambda path: Path(path).write_text(json.dumps({"stages": self.stages})))
        self.saved = True


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(str(tmp))
    os.replace(tmp, path)


_ACTIVE: list[StageCheckpoints] = []


@contextmanager
def resumable(checkpoints: StageCheckpoints) -> Iterator[StageCheckpoints]:
    """Every ``fit`` inside saves its stage to ``checkpoints`` and continues from what it holds."""
    _ACTIVE.append(checkpoints)
    try:
        yield checkpoints
    finally:
        _ACTIVE.pop()


def active() -> StageCheckpoints | None:
    """The checkpoints of the run ``fit`` is part of, if any."""
    return _ACTIVE[-1] if _ACTIVE else None
