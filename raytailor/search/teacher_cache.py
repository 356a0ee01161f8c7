"""The teacher is trained once per task and cached by a hash of what defines it.

Key: backbone arch + a fingerprint of its weights (file content hash, or the name
``imagenet``/``none``) + the data and teacher sections of the spec. A second search on the same
task (any hyper-parameter space) reuses the cached teacher instead of training it again.
Cache folder: ``$RAYTAILOR_CACHE`` or ``~/.cache/raytailor``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from raytailor.backbones.weights import resolve_weights_path
from raytailor.spec import Spec

State = dict[str, np.ndarray]


def cache_root() -> Path:
    return Path(os.environ.get("RAYTAILOR_CACHE", Path.home() / ".cache" / "raytailor"))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def teacher_key(spec: Spec) -> str:
    weights = spec.backbone.weights
    if weights not in ("imagenet", "none"):
        weights = _file_digest(resolve_weights_path(weights, Path(spec.base_dir)))
    data = dataclasses.asdict(spec.data)
    if data["root"] is not None:
        data["root"] = str((Path(spec.base_dir) / data["root"]).resolve())
    identity = {"arch": spec.backbone.arch, "weights": weights, "data": data,
                "teacher": dataclasses.asdict(spec.teacher), "format": 1}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def load_teacher(key: str) -> tuple[State, dict[str, Any]] | None:
    folder = cache_root() / "teachers" / key
    if not (folder / "teacher.json").is_file() or not (folder / "weights.safetensors").is_file():
        return None
    from safetensors.numpy import load_file

    return load_file(str(folder / "weights.safetensors")), json.loads((folder / "teacher.json").read_text())


def store_teacher(key: str, state: State, metrics: dict[str, Any]) -> Path:
    from safetensors.numpy import save_file

    folder = cache_root() / "teachers" / key
    folder.mkdir(parents=True, exist_ok=True)
    # each file written beside and renamed into place: two searches of the same teacher on one
    # machine (sharing the cache) never read a file the other is writing
    suffix = f".tmp-{os.getpid()}"
    weights = folder / f"weights.safetensors{suffix}"
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(weights))
    os.replace(weights, folder / "weights.safetensors")
    record = folder / f"teacher.json{suffix}"
    record.write_text(json.dumps(metrics, indent=2))
    os.replace(record, folder / "teacher.json")  # last: marks the entry complete
    return folder
