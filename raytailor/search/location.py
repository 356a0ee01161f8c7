"""Where a search's files are, wherever its folder now lives: Ray's experiment (``trials/``
in the folder, or remote storage) and raytailor's own files.

Tune pickles the scheduler, the callbacks and the searcher with the experiment, and with them
the paths they held when the search started. A search folder that was moved or copied (shared
on NFS, S3, between people) must be resumed where it is now, never write into the original:
the driver says which folder it runs (``search_folder``) and every raytailor file of the
search is looked up there by name (``relocated``). All of them sit directly in the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SEARCH_DIR = "RAYTAILOR_SEARCH_DIR"
EXPERIMENT = "trials"  # Ray's experiment folder inside a search folder


@contextmanager
def search_folder(out_dir: Path) -> Iterator[None]:
    """The driver runs (or restores) the search in ``out_dir`` for the duration."""
    previous = os.environ.get(SEARCH_DIR)
    os.environ[SEARCH_DIR] = str(Path(out_dir).resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SEARCH_DIR, None)
        else:
            os.environ[SEARCH_DIR] = previous


def relocated(path: Path) -> Path:
    """``path``'s file in the folder the driver runs now (``path`` itself outside a search)."""
    folder = os.environ.get(SEARCH_DIR)
    return Path(folder) / Path(path).name if folder else Path(path)


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
