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
    """The exported model as a plain ``torch.nn.Module`` in eval mode."""
    from safetensors.torch import load_file

    architecture = read_architecture(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{str(directory)!r} is not an exported model: {WEIGHTS_FILE} is missing")
    from raytailor.methods import methods

    method = methods().get(architecture.get("method"))
    if method is None:
        raise ExportError(f"{directory}: unknown method {architecture.get('method')!r}")
    model = method.rebuild(architecture)
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.to(device).eval()
