"""Where a search's files are, wherever its folder now lives: Ray's experiment (``trials/``
in the folder, or remote storage) and raytailor's own files (directly in the folder).

A search folder that was moved or copied (shared on NFS, between people) is resumed where it
is now and never writes into the original: nothing of a search records its own absolute path
except ``search.json``'s storage, which is used only when the experiment is not in the folder
(remote storage).

A multi-task search holds one folder per task (``<search>/<task>/``, the single-task layout
without ``trials/``): every task's trials are in the search's one experiment, each trial's
config naming its task; the task folder's ``search.json`` says which task it is.
"""

from __future__ import annotations

import json
from pathlib import Path

EXPERIMENT = "trials"  # Ray's experiment folder inside a search folder


def storage_location(out_dir: Path, storage: str | None) -> str:
    """Where Ray keeps the experiment: ``out_dir`` itself, or ``STORAGE/<search name>``."""
    return str(out_dir) if storage is None else f"{storage.rstrip('/')}/{out_dir.name}"


def task_of(out_dir: Path) -> str | None:
    """The task a task folder of a multi-task search holds (None: a single-task search folder)."""
    record = Path(out_dir) / "search.json"
    try:
        saved = json.loads(record.read_text()) if record.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    task = saved.get(TASK) if isinstance(saved, dict) else None
    return task if isinstance(task, str) else None


TASK = "task"  # the key naming a trial's task in its config and a task folder in its search.json


def experiment_path(out_dir: Path) -> str:
    """The Ray experiment folder of a search: inside the folder itself when it is there (a moved
    or copied folder included), else the remote storage recorded in search.json; a task
    folder's is its multi-task search's."""
    out_dir = Path(out_dir)
    if task_of(out_dir) is not None:
        return experiment_path(out_dir.parent)
    record = out_dir / "search.json"
    if (out_dir / EXPERIMENT).is_dir() or not record.is_file():
        return str(out_dir / EXPERIMENT)
    return f"{json.loads(record.read_text())['storage']}/{EXPERIMENT}"


def experiment_storage(out_dir: Path) -> str:
    """Tune's ``storage_path`` to run more trials of the search in ``out_dir``: the folder itself
    when its experiment is there, else the remote storage recorded in search.json."""
    experiment = experiment_path(out_dir)
    return experiment[: -len(EXPERIMENT) - 1]


def task_folders(out_dir: Path) -> list[Path]:
    """The task folders of the multi-task search in ``out_dir``, in its spec's order (none for
    any other folder)."""
    import yaml

    spec = Path(out_dir) / "spec.yaml"
    try:
        raw = yaml.safe_load(spec.read_text()) if spec.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    tasks = raw.get("tasks") if isinstance(raw, dict) else None
    named = [Path(out_dir) / t["name"] for t in tasks if isinstance(t, dict) and isinstance(t.get("name"), str)] \
        if isinstance(tasks, list) else []
    return [folder for folder in named if task_of(folder) is not None]


def task_folders_hint(out_dir: Path) -> str:
    """For an error about ``out_dir``: if it is a multi-task search, which task folders to give."""
    folders = task_folders(out_dir)
    if not folders:
        return ""
    return f"; it is a multi-task search: give one of its task folders ({', '.join(map(str, folders))})"
