"""Where backbone weights come from: ``imagenet`` (torchvision enums), a local file, or none.

Local files are read without pickle: ``.safetensors``, or ``.pt``/``.pth`` through
``torch.load(weights_only=True)``. A file may hold a torchvision-format state dict
(``conv1.weight``, ``layer1.0...``) or a raytailor one (``stem.``, ``blocks.``).
``asset:NAME`` names a file shipped in ``raytailor/assets``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from raytailor.errors import BackboneError

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def resolve_weights_path(weights: str, base_dir: Path | None = None) -> Path:
    """Turn ``asset:NAME`` or a (spec-relative) path into an existing file path."""
    if weights.startswith("asset:"):
        path = ASSETS / weights.removeprefix("asset:")
    else:
        path = Path(weights).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    if not path.is_file():
        raise BackboneError(
            f"backbone weights file {str(path)!r} does not exist; "
            "set backbone.weights to imagenet, none, or an existing .safetensors/.pt file"
        )
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a weights-only torch file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unreadable file: say which and why, in one line
        raise BackboneError(f"cannot read backbone weights {str(path)!r}: {error}".splitlines()[0]) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{str(path)!r} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``module``; a classifier of another size is skipped (new task)."""
    own = module.state_dict()
    classifier_keys = {k for k in state if k.startswith(("fc.", "classifier."))}
    kept = {
        k: v for k, v in state.items()
        if not (k in classifier_keys and k in own and own[k].shape != v.shape)
    }
    mismatched = [k for k, v in kept.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        key = mismatched[0]
        raise BackboneError(
            f"weights {source!r} do not fit this architecture ({key}: {tuple(kept[key].shape)} in "
            f"the file, {tuple(own[key].shape)} in the model); check backbone.arch"
        )
    missing, unexpected = module.load_state_dict(kept, strict=False)
    missing = [k for k in missing if k not in classifier_keys and not k.startswith(("fc.", "classifier."))]
    if missing or unexpected:
        sample = (missing or unexpected)[:3]
        raise BackboneError(
            f"weights {source!r} do not fit this architecture ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys, e.g. {sample}); check backbone.arch"
        )
