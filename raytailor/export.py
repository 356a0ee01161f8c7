"""Save / load tailored models without pickle: ``architecture.json`` + ``weights.safetensors``.

``load_tailored(dir)`` rebuilds the module from the JSON description (by method) and loads the
weights strictly, so the loaded module is exactly what was exported: the same tensors, and so
the same params and MACs that ``result.json`` reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raytailor.errors import ExportError

FORMAT = "raytailor-model/1"
ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"


def save_tailored(model: nn.Module, directory: str | Path, *, architecture: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    (directory / ARCHITECTURE_FILE).write_text(json.dumps({"format": FORMAT, **architecture}, indent=2))
    return directory


def read_architecture(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / ARCHITECTURE_FILE
    if not path.is_file():
        raise ExportError(f"{str(directory)!r} is not an exported model: {ARCHITECTURE_FILE} is missing")
    try:
        architecture = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}: not valid JSON ({error})") from None
    if architecture.get("format") != FORMAT:
        raise ExportError(f"{path}: format {architecture.get('format')!r} is not {FORMAT!r}")
    return architecture


def load_tailored(directory: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """The exported model as a plain ``torch.nn.Module`` in eval mode.

    A folder that was edited or damaged is refused in one line (``ExportError``) before any
    memory is allocated for it: the architecture is first built on the meta device (shapes
    only) and every tensor's shape compared with the weights file's header, so a tampered width
    or class count cannot make torch allocate what the file does not hold."""
    from safetensors.torch import load_file

    architecture = read_architecture(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{str(directory)!r} is not an exported model: {WEIGHTS_FILE} is missing")
    from raytailor.methods import methods

    method = methods().get(architecture.get("method"))
    if method is None:
        raise ExportError(f"{directory}: unknown method {architecture.get('method')!r}")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in _rebuild(method, architecture, directory).state_dict().items()}
    stored = _stored_shapes(weights)
    if stored != shapes:
        name = sorted(set(stored) ^ set(shapes)) or sorted(k for k in shapes if stored[k] != shapes[k])
        raise ExportError(f"{directory}: {WEIGHTS_FILE} does not match {ARCHITECTURE_FILE} (e.g. {name[0]!r}: file "
                          f"{stored.get(name[0])}, architecture {shapes.get(name[0])}); re-export the model")
    model = _rebuild(method, architecture, directory)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except Exception as error:  # safetensors raises its own error type for a damaged body
        raise ExportError(f"{weights}: cannot be read ({' '.join(str(error).split())[:200]}); re-export the model") from None
    return model.to(device).eval()


def _rebuild(method: Any, architecture: dict[str, Any], directory: str | Path) -> nn.Module:
    from raytailor.errors import RaytailorError

    try:
        return method.rebuild(architecture)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RaytailorError) as error:
        detail = f"missing key {error}" if isinstance(error, KeyError) else " ".join(str(error).split())[:200]
        raise ExportError(f"{directory}: {ARCHITECTURE_FILE} does not describe a {method.name} model "
                          f"({detail}); re-export the model") from None


def _stored_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header (nothing else is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # a truncated or foreign file: safetensors' own error types
        raise ExportError(f"{weights}: not a readable safetensors file ({' '.join(str(error).split())[:200]}); "
                          "re-export the model") from None
