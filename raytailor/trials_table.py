"""The trials tables of a search (Parquet, explicit schema) and reading them back.

A search writes one row per trial (a plain dict) to trials.parquet: ``trial_id``, ``status``,
``reason``, ``trained_epochs``, ``submodel``, ``chosen``, one key per sampled hyper-parameter,
``val_accuracy`` / ``test_accuracy`` (percent), ``params``, ``macs``, ``task_params``,
``feasible`` and ``on_front``. A trial's row is the sub-model it chose (``submodel`` says
which), and submodels.parquet holds one row per sub-model, ``trial_id`` ``<trial>-it<k>``.
The front is drawn over every model (``model_rows``), not only the chosen ones.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raytailor.errors import ExportError, RaytailorError

TRIALS_FILE = "trials.parquet"
SUBMODELS_FILE = "submodels.parquet"

LEADING_COLUMNS = ("trial_id", "status")
# absent from tables of older versions: reason (why a trial stopped early or failed),
# trained_epochs (training epochs the trial ran, every stage), submodel and chosen
MODEL_COLUMNS = (("reason", "str"), ("trained_epochs", "int"), ("submodel", "int"), ("chosen", "bool"))
METRIC_COLUMNS = (
    ("val_accuracy", "float"),
    ("test_accuracy", "float"),
    ("params", "int"),
    ("macs", "int"),
    ("task_params", "int"),
    ("feasible", "bool"),
    ("on_front", "bool"),
)
RESERVED_COLUMNS = frozenset(LEADING_COLUMNS) | {name for name, _ in (*MODEL_COLUMNS, *METRIC_COLUMNS)}
HYPERPARAMETER_TYPES = ("float", "int", "str", "bool")




def _arrow_type(kind: str):
    import pyarrow as pa

    return {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "bool": pa.bool_()}[kind]


def _cell(value: Any, kind: str, *, column: str, trial_id: Any) -> Any:
    """``value`` as the Python type of column ``kind``; None/NaN become null."""
    if value is None or (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isnan(value)
    ):
        return None

    def reject() -> RaytailorError:
        return RaytailorError(
            f"trial {trial_id!r}: column {column!r} is declared {kind} but got {value!r} "
            f"({type(value).__name__}); declare the right type or fix the value"
        )

    if kind == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise reject()
    if kind == "str":
        if isinstance(value, str):
            return value
        raise reject()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise reject()
    if kind == "float":
        return float(value)
    # int: accept integral floats (e.g. 3.0 from a quantised sampler), reject 3.5
    if isinstance(value, numbers.Integral):
        return int(value)
    if float(value).is_integer():
        return int(value)
    raise reject()


def trials_schema(hyperparameters: dict[str, str], metadata: dict[str, str] | None = None):
    """The explicit pyarrow schema of a trials table with these hyper-parameter columns."""
    import pyarrow as pa

    fields = [pa.field(name, pa.string()) for name in LEADING_COLUMNS]
    fields += [pa.field(name, _arrow_type(kind)) for name, kind in MODEL_COLUMNS]
    for name, kind in hyperparameters.items():
        if name in RESERVED_COLUMNS:
            raise RaytailorError(
                f"hyper-parameter name {name!r} clashes with a trials-table column; rename it"
            )
        if kind not in HYPERPARAMETER_TYPES:
            raise RaytailorError(
                f"hyper-parameter {name!r} has type {kind!r}; "
                f"use one of {', '.join(HYPERPARAMETER_TYPES)}"
            )
        fields.append(pa.field(name, _arrow_type(kind)))
    fields += [pa.field(name, _arrow_type(kind)) for name, kind in METRIC_COLUMNS]
    encoded = None
    if metadata:
        encoded = {str(k).encode("utf-8"): str(v).encode("utf-8") for k, v in metadata.items()}
    return pa.schema(fields, metadata=encoded)


def write_trials_table(
    rows: list[dict],
    path: str | os.PathLike,
    *,
    hyperparameters: dict[str, str],
    metadata: dict[str, str],
) -> None:
    """Write ``rows`` to a Parquet file with an explicit schema, so the column types do not depend
    on which trials happened to fail. Missing values (None/NaN) become nulls; extra row keys
    are ignored. ``metadata`` (e.g. the spec YAML, package versions) goes into the schema
    metadata. The file is replaced atomically so readers never see a half-written table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = trials_schema(hyperparameters, metadata)
    kinds = ({name: "str" for name in LEADING_COLUMNS} | dict(MODEL_COLUMNS) | dict(hyperparameters)
             | dict(METRIC_COLUMNS))
    columns: dict[str, list] = {name: [] for name in schema.names}
    for row in rows:
        trial_id = row.get("trial_id")
        if not isinstance(trial_id, str) or not trial_id:
            raise RaytailorError(
                f"every trial needs a non-empty string trial_id, got {trial_id!r}; "
                "set row['trial_id']"
            )
        for name in schema.names:
            columns[name].append(_cell(row.get(name), kinds[name], column=name, trial_id=trial_id))
    table = pa.table(columns, schema=schema)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except OSError as error:  # pyarrow's own say no path; the user needs to know which folder is full
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    finally:
        tmp.unlink(missing_ok=True)


def read_trials_table(path: str | os.PathLike) -> tuple[list[dict], dict[str, str]]:
    """Rows and decoded schema metadata of a trials table written by ``write_trials_table``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ExportError(
            f"trials table {str(path)!r} does not exist; "
            f"point at the {TRIALS_FILE} of a finished search"
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise ExportError(
            f"trials table {str(path)!r} is not readable Parquet ({reason}); "
            "re-run or restore the search output"
        ) from None
    missing = [
        name
        for name in (*LEADING_COLUMNS, *(n for n, _ in METRIC_COLUMNS))
        if name not in table.column_names
    ]
    if missing:
        raise ExportError(
            f"{str(path)!r} is not a raytailor trials table: columns {missing} are missing; "
            f"use a {TRIALS_FILE} written by raytailor"
        )
    raw = table.schema.metadata or {}
    metadata = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()}
    return table.to_pylist(), metadata


def model_rows(search_dir: str | os.PathLike) -> list[dict]:
    """Every model of a search: its TransTailor sub-models (submodels.parquet) and the trials
    that are a single model (NetTailor trials, failed or unfinished trials)."""
    search_dir = Path(search_dir)
    trials, _ = read_trials_table(search_dir / TRIALS_FILE)
    if not (search_dir / SUBMODELS_FILE).is_file():
        return trials
    submodels, _ = read_trials_table(search_dir / SUBMODELS_FILE)
    return [r for r in trials if r.get("submodel") is None] + submodels


def combine_tables(paths: Sequence[str | os.PathLike]) -> list[dict]:
    """Rows of several trials tables as one list, e.g. to draw one front over several searches.

    Each ``trial_id`` is prefixed with its file's parent directory name and "/" so ids stay
    unique; hyper-parameter columns are the union over all tables (missing -> None)."""
    return combine_rows([(Path(p).resolve().parent.name, read_trials_table(p)[0]) for p in paths])


def combine_rows(named: Sequence[tuple[str, list[dict]]]) -> list[dict]:
    """``combine_tables`` for rows already read: (prefix, rows) per search."""
    loaded: list[list[dict]] = []
    hp_names: list[str] = []
    for prefix, rows in named:
        rows = [dict(row) for row in rows]
        for row in rows:
            for key in row:
                if key not in RESERVED_COLUMNS and key not in hp_names:
                    hp_names.append(key)
            row["trial_id"] = f"{prefix}/{row['trial_id']}"
        loaded.append(rows)

    combined: list[dict] = []
    seen: dict[str, int] = {}
    for rows in loaded:
        for row in rows:
            if row["trial_id"] in seen:
                raise RaytailorError(
                    f"combined trial id {row['trial_id']!r} is not unique "
                    "(two tables share a parent directory name); "
                    "give each search its own directory name"
                )
            seen[row["trial_id"]] = 1
            out = {"trial_id": row["trial_id"], "status": row.get("status")}
            out.update({name: row.get(name) for name, _ in MODEL_COLUMNS})
            out.update({name: row.get(name) for name in hp_names})
            out.update({name: row.get(name) for name, _ in METRIC_COLUMNS})
            combined.append(out)
    return combined


def infer_kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in present):
        return "int"
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return "float"
    return "str"
