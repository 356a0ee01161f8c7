"""Deployable files of an exported model: ONNX and a ``torch.export`` program.

``raytailor export ... --format onnx,pt2`` writes, beside the model folder's safetensors + JSON
(always written: it is what ``load_tailored`` reads):

- ``model.onnx``: through torch's current ONNX exporter (``torch.onnx.export(..., dynamo=True)``),
  a dynamic batch dimension; runs with onnxruntime alone, no raytailor or torch needed;
- ``model.pt2``: the ``torch.export`` program (``torch.export.load(path).module()``).

The input is what the model was trained on: an N x 3 x S x S float tensor normalised with the
``mean`` / ``std`` in ``architecture.json``. With ``--normalize`` the normalisation is part of the
graph and the input is RGB in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from raytailor.errors import ExportError
from raytailor.export import load_tailored, read_architecture

FORMATS = ("safetensors", "onnx", "pt2")
FILES = {"onnx": "model.onnx", "pt2": "model.pt2"}


class Normalised(nn.Module):
    """``model((x - mean) / std)`` for RGB input in [0, 1]."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"--format must be a comma-separated subset of {', '.join(FORMATS)}, got {text!r}")
    return formats


def write_formats(model_dir: Path, formats: list[str], *, normalize: bool = False) -> list[Path]:
    """Write the asked formats into ``model_dir`` (an exported model folder); returns the files."""
    wanted = [f for f in formats if f in FILES]
    if not wanted:
        return []
    architecture = read_architecture(model_dir)
    model = load_tailored(model_dir)
    size = architecture["input"]["image_size"]
    module = Normalised(model, architecture["input"]["mean"], architecture["input"]["std"]).eval() if normalize \
        else model
    example = (torch.rand(2, 3, size, size),)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    written = []
    try:
        if "pt2" in wanted:
            program = torch.export.export(module, example, dynamic_shapes=dynamic)
            torch.export.save(program, str(model_dir / FILES["pt2"]))
            written.append(model_dir / FILES["pt2"])
        if "onnx" in wanted:
            onnx_program = torch.onnx.export(module, example, dynamic_shapes=dynamic, dynamo=True, verbose=False)
            onnx_program.save(str(model_dir / FILES["onnx"]))
            written.append(model_dir / FILES["onnx"])
    except Exception as error:  # exporters raise many types; the user gets one line
        raise ExportError(f"could not write {', '.join(wanted)} for {model_dir} "
                          f"({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None
    return written
