"""A task bank: many tailored models in one folder, every tensor they share stored and held once.

NetTailor models of different tasks reuse the same frozen pre-trained stem and blocks; only
their proxies, classifier and the choice of blocks differ. A bank stores each distinct tensor
once, named by its content (SHA-256 of dtype, shape and bytes), and per task the model's
``architecture.json`` and which tensor each of its weights is. Nothing here knows a method:
what the tasks share is found by content, so TransTailor models, whose every weight was
fine-tuned, share nothing and are stored whole (the listing says so).

Layout::

    BANK/bank.json            format, and per task: architecture, {weight name: tensor id},
                              the source it came from and its metrics
    BANK/tensors.safetensors  every distinct tensor, once, under its id

``load_bank(BANK)`` reads the tensors once; ``bank.model(task)`` builds the task's module and
assigns those tensors to it without copying, so every task served from one process holds one
copy of the backbone. Models from a bank are for inference (eval mode, no gradients): training
one would change the tensors every task shares.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raytailor.errors import ExportError

FORMAT = "raytailor-bank/1"
BANK_FILE = "bank.json"
TENSORS_FILE = "tensors.safetensors"


def tensor_id(tensor: torch.Tensor) -> str:
    """The content of ``tensor`` (dtype, shape, bytes) as a short hex digest."""
    tensor = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:32]


def build_bank(sources: list[Path], out: Path, *, names: list[str] | None = None,
               trial: str = "leanest") -> dict[str, Any]:
    """Gather one model per source (a search or tailor run folder; ``trial`` picks which, default
    its leanest feasible) into the bank folder ``out``. Everything is checked, and every model
    loaded, before ``out`` is written; the folder appears whole or not at all. Returns the
    bank's listing (``TaskBank.describe``)."""
    from safetensors.torch import save_file

    from raytailor.export import load_tailored, read_architecture
    from raytailor.export_run import find_model

    sources = _task_folders(sources)
    if names is not None and len(names) != len(sources):
        raise ExportError(f"--names gives {len(names)} names for {len(sources)} folders; give one per folder")
    _check_out(out)
    tasks: dict[str, dict[str, Any]] = {}
    store: dict[str, torch.Tensor] = {}
    for k, source in enumerate(sources):
        model_dir, result_file = find_model(Path(source), trial)
        result = json.loads(result_file.read_text()) if result_file and result_file.is_file() else {}
        name = names[k] if names else _task_name(Path(source), result)
        if name in tasks:
            raise ExportError(f"two folders are both task {name!r}; name them with --names a,b,...")
        model = load_tailored(model_dir)  # validated against its architecture: a tampered folder is refused
        weights = {}
        for key, tensor in model.state_dict().items():
            weights[key] = tensor_id(tensor)
            store.setdefault(weights[key], tensor.detach().cpu().contiguous())
        tasks[name] = {"architecture": read_architecture(model_dir), "weights": weights,
                       "source": str(Path(source).resolve()), "model": str(model_dir.resolve()),
                       "metrics": {key: result.get(key) for key in ("val_accuracy", "test_accuracy", "params", "macs",
                                                                    "task_params")}}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(store, str(staging / TENSORS_FILE))
        (staging / BANK_FILE).write_text(json.dumps({"format": FORMAT, "tasks": tasks}, indent=2))
        if out.exists():
            out.rmdir()  # _check_out allowed only an empty folder
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_bank(out).describe()


def _check_out(out: Path) -> None:
    """A folder we can make and write (``preflight.check_output``) that holds nothing yet."""
    from raytailor.preflight import check_output

    check_output(out)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"--out {str(out)!r} exists and is not an empty folder; choose a new one")


def _task_folders(sources: list[Path]) -> list[Path]:
    """``sources`` with each multi-task search folder replaced by its task folders, in its spec's order."""
    from raytailor.search.location import task_folders

    return [folder for source in map(Path, sources) for folder in task_folders(source) or [source]]


def _task_name(source: Path, result: dict[str, Any]) -> str:
    """A multi-task search's task name, else the spec's name (a search's spec.yaml, a tailor
    run's result.json), else the folder's."""
    from raytailor.search.location import task_of

    if task_of(source) is not None:
        return task_of(source)
    spec = source / "spec.yaml"
    if spec.is_file():
        import yaml

        try:
            name = (yaml.safe_load(spec.read_text()) or {}).get("name")
        except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
            name = None
        if isinstance(name, str) and name:
            return name
    return str(result.get("name") or source.resolve().name)


@dataclass
class TaskBank:
    """Every task of a bank, served from one copy of each tensor (``load_bank``)."""

    path: Path
    entries: dict[str, dict[str, Any]]  # bank.json's, by task name
    tensors: dict[str, torch.Tensor]    # by id, each held once

    @property
    def tasks(self) -> list[str]:
        """The task names, in the order the bank was built."""
        return list(self.entries)

    def model(self, task: str) -> nn.Module:
        """Task ``task``'s model (eval mode, no gradients) whose tensors are the bank's own, not copies."""
        from raytailor.export import _rebuild
        from raytailor.methods import methods

        if task not in self.entries:
            raise ExportError(f"{self.path} has no task {task!r}; it has {', '.join(self.tasks)}")
        entry = self.entries[task]
        architecture = entry["architecture"]
        method = methods().get(architecture.get("method"))
        if method is None:
            raise ExportError(f"{self.path}: task {task!r} has unknown method {architecture.get('method')!r}")
        with torch.device("meta"):  # shapes first: a tampered entry allocates nothing
            shapes = _rebuild(method, architecture, self.path / task).state_dict()
        state = {}
        for key, meta in shapes.items():
            tensor = self.tensors.get(entry["weights"].get(key, ""))
            if tensor is None or tensor.shape != meta.shape or tensor.dtype != meta.dtype:
                raise ExportError(f"{self.path}: task {task!r} weight {key!r} is missing or does not match its "
                                  "architecture; build the bank again")
            state[key] = tensor
        if set(entry["weights"]) != set(state):
            raise ExportError(f"{self.path}: task {task!r} lists weights its architecture does not have; "
                              "build the bank again")
        # built for real (a module's non-persistent buffers, such as NetTailor's path costs, are
        # computed when it is built, not stored), then every weight replaced by the bank's own
        # tensor: assign shares it, load would copy it
        device = next(iter(self.tensors.values())).device if self.tensors else torch.device("cpu")
        with torch.device(device):
            model = _rebuild(method, architecture, self.path / task)
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval().requires_grad_(False)

    def describe(self) -> dict[str, Any]:
        """Per task: params, MACs, blocks used, and bytes of its own tensors (those no other task
        uses) against the bytes it uses; and the bank's total bytes against the tasks' sum."""
        from raytailor.cost import count_params, image_macs

        users: dict[str, int] = {}
        for entry in self.entries.values():
            for tensor in set(entry["weights"].values()):
                users[tensor] = users.get(tensor, 0) + 1
        size = {tensor: self.tensors[tensor].numel() * self.tensors[tensor].element_size() for tensor in users}
        rows = []
        for name, entry in self.entries.items():
            model = self.model(name)
            used = set(entry["weights"].values())
            architecture = entry["architecture"]
            rows.append({
                "task": name, "method": architecture["method"], "arch": architecture["arch"],
                "params": count_params(model), "macs": image_macs(model, architecture["input"]["image_size"]),
                "blocks_used": _blocks_used(entry["weights"]),
                "bytes": sum(size[t] for t in used), "own_bytes": sum(size[t] for t in used if users[t] == 1),
                "val_accuracy": entry["metrics"].get("val_accuracy"),
                "test_accuracy": entry["metrics"].get("test_accuracy"),
            })
        return {"bank": str(self.path), "tasks": rows, "bytes": sum(size.values()),
                "separate_bytes": sum(r["bytes"] for r in rows)}


def _blocks_used(weights: dict[str, str]) -> list[int]:
    """Backbone blocks with a weight in the model, by number (``blocks.<i>.`` or ``blocks.block<i>.``)."""
    numbers = {re.sub(r"\D", "", key.split(".")[1]) for key in weights if key.startswith("blocks.")}
    return sorted(int(n) for n in numbers if n)


def load_bank(path: str | Path, *, device: str | torch.device = "cpu") -> TaskBank:
    """Open a bank folder written by ``raytailor bank``; its tensors are read once, onto ``device``."""
    from safetensors.torch import load_file

    path = Path(path)
    manifest = path / BANK_FILE
    if not manifest.is_file():
        raise ExportError(f"{str(path)!r} is not a task bank: {BANK_FILE} is missing")
    try:
        data = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExportError(f"{manifest}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tasks"), dict):
        raise ExportError(f"{manifest}: not a {FORMAT} bank; build it again with `raytailor bank`")
    try:
        tensors = load_file(str(path / TENSORS_FILE), device=str(device))
    except Exception as error:  # safetensors' own error types for a missing, truncated or foreign file
        raise ExportError(f"{path / TENSORS_FILE}: cannot be read ({' '.join(str(error).split())[:200]}); "
                          "build the bank again") from None
    return TaskBank(path, data["tasks"], tensors)


def format_listing(listing: dict[str, Any]) -> str:
    """The bank as a table: one line per task, then the bytes it saves."""
    lines = [f"{'task':<20} {'method':<12} {'params':>10} {'MACs':>13} {'blocks':>7} {'own MB':>8} {'MB':>8}  test"]
    for row in listing["tasks"]:
        test = "" if row["test_accuracy"] is None else f"{row['test_accuracy']:.2f}%"
        lines.append(f"{row['task']:<20} {row['method']:<12} {row['params']:>10,} {row['macs']:>13,} "
                     f"{len(row['blocks_used']):>7} {row['own_bytes'] / 1e6:>8.2f} {row['bytes'] / 1e6:>8.2f}  {test}")
    lines.append(f"bank {listing['bytes'] / 1e6:.2f} MB for {len(listing['tasks'])} tasks; "
                 f"{listing['separate_bytes'] / 1e6:.2f} MB as separate models"
                 + (" (TransTailor models share nothing: every weight is their own)"
                    if any(row["method"] == "transtailor" for row in listing["tasks"]) else ""))
    return "\n".join(lines)
