"""Where a search's files are, wherever its folder now lives: Ray's experiment (``trials/``
in the folder, or remote storage) and raytailor's own files (directly in the folder).

A search folder that was moved or copied (shared on NFS, between people) is resumed where it
is now and never writes into the original: nothing of a search records its own absolute path
except ``search.json``'s storage, which is used only when the experiment is not in the folder
(remote storage).
"""

from __future__ import annotations

import json
from pathlib import Path

EXPERIMENT = "trials"  # Ray's experiment folder inside a search folder


def storage_location(out_dir: Path, storage: str | None) -> str:
    """Where Ray keeps the experiment: ``out_dir`` itself, or ``STORAGE/<search name>``."""
    return str(out_dir) if storage is None else f"{storage.rstrip('/')}/{out_dir.name}"


def experiment_path(out_dir: Path) -> str:
    """The Ray experiment folder of a search: inside the folder itself when it is there (a moved
    or copied folder included), else the remote storage recorded in search.json."""
    record = out_dir / "search.json"
    if (out_dir / EXPERIMENT).is_dir() or not record.is_file():
        return str(out_dir / EXPERIMENT)
    return f"{json.loads(record.read_text())['storage']}/{EXPERIMENT}"


def experiment_storage(out_dir: Path) -> str:
    """Tune's ``storage_path`` to run more trials of the search in ``out_dir``: the folder itself
    when its experiment is there, else the remote storage recorded in search.json."""
    experiment = experiment_path(out_dir)
    return experiment[: -len(EXPERIMENT) - 1]
