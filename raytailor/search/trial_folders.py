"""A search's trials, read from the files Ray Tune wrote in each trial's folder, never from a pickle.

Every trial folder of the experiment (``trials/`` in the search folder, or the remote storage)
holds ``params.json`` (the trial's sampled values), ``result.json`` (one JSON line per report)
and, for a finished trial, ``checkpoint_<n>/`` (what ``run.save_run`` wrote: the model as
safetensors + JSON). A trial that raised has ``error.txt``. Ray also writes ``*.pkl`` files
(``tuner.pkl``, ``params.pkl``, ``error.pkl``, the searcher's state); they are never opened:
unpickling a file from a shared folder runs whatever code it names. A broken folder (a
truncated line, an empty file, a missing checkpoint) gives what can be read, never an error.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FAILURE = re.compile(r"^Failure # \d+", re.MULTILINE)  # Tune's header of each failure in error.txt
_TRIAL_ID = re.compile(r"^[A-Za-z_]+?_([0-9a-f]{5,}(?:_\d{5})?)_\d+_")  # tailoring_trial_<id>_<n>_<values>


@dataclass
class TrialRecord:
    trial_id: str
    filesystem: Any                      # a pyarrow FileSystem (local, or the remote storage's)
    folder: str                          # the trial folder on ``filesystem``
    config: dict[str, Any]               # params.json
    reports: list[dict[str, Any]] = field(default_factory=list)  # result.json, in order
    error: str | None = None             # error.txt, whole (one "Failure # n" section per failure)
    checkpoint: str | None = None        # the newest checkpoint_<n> folder on ``filesystem``, if any

    @property
    def metrics(self) -> dict[str, Any]:
        """The last report ({} before the first)."""
        return self.reports[-1] if self.reports else {}

    @property
    def failures(self) -> int:
        """How often the trial's worker failed (Tune retries it up to ``search.max_failures`` times)."""
        return len(_FAILURE.findall(self.error or "")) or (1 if self.error else 0)

    def saved_result(self) -> dict[str, Any]:
        """The checkpoint's result.json (what ``run.save_run`` wrote: the run's metrics and its
        sub-models), {} without a checkpoint or when it cannot be read."""
        if self.checkpoint is None:
            return {}
        try:
            saved = json.loads(_read_text(self.filesystem, f"{self.checkpoint}/result.json") or "{}")
        except json.JSONDecodeError:
            return {}
        return saved if isinstance(saved, dict) else {}


def _filesystem(location: str):
    import pyarrow.fs

    if "://" in location:
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())


def _read_text(fs, path: str) -> str | None:
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read().decode("utf-8", errors="replace")
    except (OSError, FileNotFoundError):
        return None


def _json_lines(text: str | None) -> list[dict[str, Any]]:
    reports = []
    for line in (text or "").splitlines():
        try:
            report = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a full disk or a killed process
        if isinstance(report, dict):
            reports.append(report)
    return reports


def read_trials(experiment: str, *, known: dict[str, TrialRecord] | None = None) -> list[TrialRecord]:
    """Every trial folder of the Ray experiment at ``experiment`` (path or URI), sorted by trial id.
    ``known``: records already read, by folder, taken as they are (trials that ended)."""
    import pyarrow.fs

    fs, root = _filesystem(experiment)
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=False))
    except (OSError, FileNotFoundError):
        return []
    records = []
    for entry in entries:
        if entry.type != pyarrow.fs.FileType.Directory:
            continue
        if known and entry.path in known:
            records.append(known[entry.path])
            continue
        try:
            inside = {info.base_name: info for info in fs.get_file_info(pyarrow.fs.FileSelector(entry.path))}
        except (OSError, FileNotFoundError):
            continue
        named = _TRIAL_ID.match(entry.base_name)
        has_checkpoint = any(name.startswith("checkpoint_") for name in inside)
        if "params.json" not in inside and "result.json" not in inside and not (named and has_checkpoint):
            continue  # not a trial (Ray's own folders, RESTARTS, INTERRUPTED); a trial whose
            # checkpoint reached its folder before its first reports did (a lost driver) is one
        try:
            config = json.loads(_read_text(fs, f"{entry.path}/params.json") or "{}")
        except json.JSONDecodeError:
            config = {}
        reports = _json_lines(_read_text(fs, f"{entry.path}/result.json"))
        if not config:  # params.json emptied by a full disk (Ray writes it again): every report has the config
            config = next((r["config"] for r in reversed(reports) if isinstance(r.get("config"), dict)), {})
        trial_id = next((r["trial_id"] for r in reversed(reports) if r.get("trial_id")), None) or (
            named.group(1) if named else entry.base_name)
        checkpoints = sorted(name for name, info in inside.items()
                             if name.startswith("checkpoint_") and info.type == pyarrow.fs.FileType.Directory)
        error = _read_text(fs, f"{entry.path}/error.txt") if "error.txt" in inside else None
        records.append(TrialRecord(
            trial_id=str(trial_id), filesystem=fs, folder=entry.path, config=config if isinstance(config, dict) else {},
            reports=reports,
            error=_saved_error(error),
            checkpoint=f"{entry.path}/{checkpoints[-1]}" if checkpoints else None,
        ))
    return sorted(records, key=lambda r: r.trial_id)


_FRAME = re.compile(r'^\s*File "')  # a traceback's frame line: no error ends with one


def _saved_error(error: str | None) -> str | None:
    """``error.txt`` as Ray saved it; one that a full disk left empty or cut short mid-traceback
    (Tune ends every failure with the error's own line and a newline) gets a last line saying so,
    the line a trial's reason is taken from."""
    if error is None:
        return None
    if not error.strip():
        return "the trial failed and its error.txt is empty (a full disk?)"
    last = error.rstrip("\n").rsplit("\n", 1)[-1]
    if not error.endswith("\n") or _FRAME.match(last):
        return f"{error}\nthe trial failed and its error.txt is cut short (a full disk?)"
    return error


@contextmanager
def local_folder(record: TrialRecord, folder: str) -> Iterator[Path]:
    """``folder`` (on the record's file system, e.g. its checkpoint) as a local folder: itself,
    or a temporary copy of a remote one."""
    import pyarrow.fs

    if isinstance(record.filesystem, pyarrow.fs.LocalFileSystem):
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory() as local:
        pyarrow.fs.copy_files(folder, local, source_filesystem=record.filesystem,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
        yield Path(local)


INTERRUPTED = "interrupted"  # in the experiment: folders of trials a resume ran again


def set_aside(record: TrialRecord, experiment: str) -> None:
    """Move an interrupted trial's folder, which a resume runs again under a new id, to
    ``<experiment>/interrupted/``: no longer a trial of the search, its reports stay readable
    (TensorBoard shows its epochs before the interruption)."""
    _, root = _filesystem(experiment)
    record.filesystem.create_dir(f"{root}/{INTERRUPTED}", recursive=True)
    record.filesystem.move(record.folder, f"{root}/{INTERRUPTED}/{record.folder.rstrip('/').rsplit('/', 1)[-1]}")


RESTARTS = "restarts"  # in the experiment: interrupted trials' last states, kept by a resume


def keep_for_restart(record: TrialRecord, restarts: str, key: str) -> int:
    """Copy the trial's stage checkpoint (if it has one) to ``restarts/<key>`` on the same file
    system, for the trial that runs its values again; returns the training epochs it holds."""
    import pyarrow.fs

    from raytailor.stage_checkpoints import INDEX

    if record.checkpoint is None or record.saved_result():  # none, or a final one
        return 0
    try:
        stages = json.loads(_read_text(record.filesystem, f"{record.checkpoint}/{INDEX}") or "{}").get("stages", [])
    except json.JSONDecodeError:
        return 0
    _, root = _filesystem(restarts)
    record.filesystem.create_dir(f"{root}/{key}", recursive=True)
    pyarrow.fs.copy_files(record.checkpoint, f"{root}/{key}", source_filesystem=record.filesystem,
                          destination_filesystem=record.filesystem)
    return sum(int(stage.get("epoch", 0)) for stage in stages)


def remove_restarts(restarts: str) -> None:
    """Delete what ``keep_for_restart`` kept (once the resumed trials have run)."""
    fs, root = _filesystem(restarts)
    try:
        fs.delete_dir(root)
    except (OSError, FileNotFoundError):
        pass
