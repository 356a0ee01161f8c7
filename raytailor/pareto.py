"""Pareto fronts of a search: which trials are worth keeping, the trials table, and its plot.

A search writes one row per trial (a plain dict) to trials.parquet: ``trial_id``, ``status``,
``submodel``, ``chosen``, one key per sampled hyper-parameter, ``val_accuracy`` /
``test_accuracy`` (percent), ``params``, ``macs``, ``task_params`` and ``feasible``. A
NetTailor trial is one model (``submodel`` null). A TransTailor trial yields a chain of
sub-models: its trials.parquet row is the sub-model it chose (``submodel`` says which), and
submodels.parquet holds one row per sub-model, ``trial_id`` ``<trial>-it<k>``. The front is
drawn over every model (``model_rows``), not only the chosen ones. Model selection only ever
looks at ``val_accuracy``: the objective "accuracy" always means validation accuracy, never
test accuracy, so the test split stays an unbiased estimate of the chosen model.

A row counts for the front only if it is *completed* (status ``TERMINATED`` and every metric the
front looks at is finite) and *feasible* (it met the search constraints). Failed or infeasible
trials are kept in the table and the plot, but never selected; so are trials early stopping
ended (status ``STOPPED``, with a ``reason``; their metrics are the last estimate, the validation
accuracy so far and the projected costs, and they have no test accuracy).

Plots use matplotlib's Agg canvas directly (no pyplot, no display, no global backend switch).
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
COMPLETED_STATUS = "TERMINATED"
STOPPED_STATUS = "STOPPED"  # ended by early stopping: ``reason`` says where and why; never selected

# objective name -> (row key, sense). "accuracy" is validation accuracy, always.
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("val_accuracy", "max"),
    "macs": ("macs", "min"),
    "params": ("params", "min"),
    "task_params": ("task_params", "min"),
}
COST_OBJECTIVES = ("macs", "params", "task_params")
AXIS_LABELS = {
    "macs": "MACs per image",
    "params": "parameters",
    "task_params": "task-specific parameters",
    "val_accuracy": "validation accuracy (%)",
}

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

_ZOOM_POINTS = 15.0  # plot: models further below the target than this are drawn at the bottom edge
_BLOCK = 512  # rows per block in non_dominated: bounds memory to _BLOCK * n * m booleans


# --------------------------------------------------------------------------------------------
# Dominance
# --------------------------------------------------------------------------------------------


def non_dominated(points: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows of ``points`` (n x m) that no other row dominates.

    ``senses`` gives "max" or "min" per column. ``a`` dominates ``b`` iff ``a`` is at least as good
    in every column and strictly better in one, so identical duplicates all stay on the front.
    Rows containing NaN are never on the front and never dominate anything.
    """
    points = np.asarray(points, dtype=np.float64)
    senses = list(senses)
    if points.ndim != 2:
        raise RaytailorError(
            f"non_dominated needs an n x m array of points, got shape {points.shape}; "
            "pass one row per trial and one column per objective"
        )
    if len(senses) != points.shape[1] or not senses:
        raise RaytailorError(
            f"non_dominated needs one sense per column: {points.shape[1]} columns but "
            f"senses={senses!r}; pass 'max' or 'min' for each column"
        )
    bad = [s for s in senses if s not in ("max", "min")]
    if bad:
        raise RaytailorError(
            f"objective sense must be 'max' or 'min', got {bad[0]!r}; use one of those"
        )

    # Turn every column into "smaller is better".
    sign = np.array([-1.0 if s == "max" else 1.0 for s in senses])
    costs = points * sign
    valid = ~np.isnan(costs).any(axis=1)
    candidates = costs[valid]
    dominated = np.zeros(len(candidates), dtype=bool)
    for start in range(0, len(candidates), _BLOCK):
        a = candidates[start : start + _BLOCK, None, :]  # possible dominators
        b = candidates[None, :, :]
        dominated |= ((a <= b).all(axis=2) & (a < b).any(axis=2)).any(axis=0)
    mask = np.zeros(len(points), dtype=bool)
    mask[valid] = ~dominated
    return mask


def meets_target(val_accuracy: float, accuracy_target: float | None) -> bool:
    """Feasible: a finite validation accuracy at least the target (no target: always)."""
    if accuracy_target is None:
        return True
    return math.isfinite(val_accuracy) and val_accuracy >= accuracy_target


def leanest_cost(objectives: Sequence[str]) -> str:
    """The cost a search picks its leanest model by: its first cost objective (default macs)."""
    return next((o for o in objectives if o != "accuracy"), "macs")


def submodel_id(trial_id: str, iteration: int) -> str:
    """The row id of sub-model ``iteration`` of a TransTailor trial."""
    return f"{trial_id}-it{iteration}"


def objective_columns(objectives: Sequence[str]) -> list[tuple[str, str]]:
    """Row key and sense of each objective, e.g. ``[("val_accuracy", "max"), ("macs", "min")]``.

    "accuracy" maps to ``val_accuracy`` (never ``test_accuracy``); costs are minimised.
    """
    if isinstance(objectives, str) or not objectives:
        raise RaytailorError(
            f"objectives must be a non-empty list, got {objectives!r}; "
            f"use e.g. ['accuracy', 'macs'] (known: {', '.join(OBJECTIVES)})"
        )
    columns = []
    for objective in objectives:
        if objective not in OBJECTIVES:
            hint = (
                " (model selection uses validation accuracy: write 'accuracy')"
                if "accuracy" in str(objective)
                else ""
            )
            raise RaytailorError(
                f"unknown objective {objective!r}{hint}; use one of {', '.join(OBJECTIVES)}"
            )
        columns.append(OBJECTIVES[objective])
    if len(set(columns)) != len(columns):
        raise RaytailorError(
            f"objectives must not repeat, got {list(objectives)!r}; list each once"
        )
    return columns


def _finite(value: Any) -> bool:
    return (
        value is not None
        and isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _selectable(row: dict, keys: Sequence[str]) -> bool:
    """Feasible, completed, and every metric in ``keys`` finite."""
    return (
        row.get("status") == COMPLETED_STATUS
        and bool(row.get("feasible") or False)
        and all(_finite(row.get(key)) for key in keys)
    )


def _completed(row: dict, keys: Sequence[str]) -> bool:
    return row.get("status") == COMPLETED_STATUS and all(_finite(row.get(key)) for key in keys)


def mark_front(rows: list[dict], objectives: Sequence[str]) -> list[dict]:
    """Copies of ``rows`` with ``on_front`` set: True only for feasible, completed rows that no
    other feasible, completed row dominates on ``objectives``; False for everything else.

    Infeasible and failed rows are excluded *before* comparing, so they can never push a
    selectable trial off the front.
    """
    columns = objective_columns(objectives)
    keys = [key for key, _ in columns]
    marked = [{**row, "on_front": False} for row in rows]
    eligible = [i for i, row in enumerate(rows) if _selectable(row, keys)]
    if eligible:
        points = np.array([[float(rows[i][k]) for k in keys] for i in eligible], dtype=np.float64)
        mask = non_dominated(points, [sense for _, sense in columns])
        for i, on_front in zip(eligible, mask):
            marked[i]["on_front"] = bool(on_front)
    return marked


def leanest(rows: list[dict], *, cost: str = "macs") -> dict | None:
    """The feasible, completed row with the smallest ``cost``: the cheapest model that met the
    constraints. Ties go to higher ``val_accuracy``, then to the smaller ``trial_id``.
    None if no row is feasible and completed."""
    if cost not in COST_OBJECTIVES:
        raise RaytailorError(
            f"leanest cost must be one of {', '.join(COST_OBJECTIVES)}, got {cost!r}; "
            "pick one of those"
        )
    eligible = [row for row in rows if _selectable(row, (cost, "val_accuracy"))]
    if not eligible:
        return None
    best = min(eligible, key=lambda r: (r[cost], -float(r["val_accuracy"]), str(r.get("trial_id"))))
    return dict(best)


# --------------------------------------------------------------------------------------------
# Trials table (Parquet)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


def plot_front(
    rows: list[dict],
    path: str | os.PathLike,
    *,
    objectives: Sequence[str],
    teacher: dict | None = None,
    max_drop: float | None = None,
    title: str = "",
) -> None:
    """Save ``front_figure`` as a PNG (120 dpi)."""
    fig = front_figure(rows, objectives=objectives, teacher=teacher, max_drop=max_drop, title=title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)


def front_figure(
    rows: list[dict],
    *,
    objectives: Sequence[str],
    teacher: dict | None = None,
    max_drop: float | None = None,
    title: str = "",
):
    """A matplotlib Figure of validation accuracy against the first cost objective.

    Completed trials are grey (hollow if infeasible), the Pareto front over ``objectives`` is
    highlighted, the accuracy-vs-cost frontier is drawn as a step line, the teacher is a star and
    ``teacher val_accuracy - max_drop`` a dashed target line. The x axis is logarithmic when the
    costs span more than 10x. Failed trials are counted in the legend but not drawn. Models more
    than 15 points below the target are drawn at the bottom edge of a zoomed y axis.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    columns = objective_columns(objectives)
    cost_keys = [key for key, sense in columns if sense == "min"]
    x_key = cost_keys[0] if cost_keys else "macs"  # accuracy-only search: still plot against MACs
    y_key = "val_accuracy"

    target = None
    if max_drop is not None:
        if teacher is None or not _finite(teacher.get(y_key)):
            raise RaytailorError(
                f"max_drop={max_drop!r} needs the teacher's val_accuracy for the target line; "
                "pass teacher={'val_accuracy': ...}"
            )
        target = float(teacher[y_key]) - float(max_drop)

    marked = mark_front(rows, objectives)
    completed = [r for r in marked if _completed(r, (x_key, y_key))]
    n_stopped = sum(r.get("status") == STOPPED_STATUS for r in rows)
    n_failed = len(rows) - len(completed) - n_stopped
    feasible = [r for r in completed if bool(r.get("feasible") or False)]
    infeasible = [r for r in completed if not bool(r.get("feasible") or False)]
    front = [r for r in feasible if r["on_front"]]
    # the 2-D accuracy-vs-cost staircase among feasible trials (== the front for two objectives)
    frontier = []
    if feasible:
        pts = np.array([[r[x_key], r[y_key]] for r in feasible], dtype=np.float64)
        frontier = sorted(
            (tuple(p) for p in pts[non_dominated(pts, ["min", "max"])]),
            key=lambda p: (p[0], p[1]),
        )

    fig = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    def xy(subset: list[dict]) -> tuple[list[float], list[float]]:
        return [float(r[x_key]) for r in subset], [float(r[y_key]) for r in subset]

    if feasible:
        ax.scatter(
            *xy(feasible), s=24, color="0.6", label=f"feasible ({len(feasible)})", zorder=2
        )
    if infeasible:
        ax.scatter(
            *xy(infeasible),
            s=28,
            facecolors="none",
            edgecolors="0.45",
            linewidths=1.0,
            label=f"infeasible ({len(infeasible)})",
            zorder=2,
        )
    if frontier:
        fx, fy = zip(*frontier)
        ax.step(fx, fy, where="post", color="tab:blue", linewidth=1.5, alpha=0.8, zorder=3)
    if front:
        ax.scatter(
            *xy(front),
            s=60,
            color="tab:blue",
            edgecolors="black",
            linewidths=0.7,
            label=f"Pareto front ({len(front)})",
            zorder=4,
        )
    xs = [float(r[x_key]) for r in completed]
    if teacher is not None and _finite(teacher.get(x_key)) and _finite(teacher.get(y_key)):
        ax.scatter(
            [float(teacher[x_key])],
            [float(teacher[y_key])],
            marker="*",
            s=320,
            color="gold",
            edgecolors="black",
            linewidths=0.8,
            label="teacher",
            zorder=5,
        )
        xs.append(float(teacher[x_key]))
    if target is not None:
        ax.axhline(
            target,
            linestyle="--",
            color="tab:red",
            linewidth=1.2,
            label=f"target {target:.2f}% (teacher − {float(max_drop):g} pts)",
            zorder=1,
        )
    if n_stopped:
        ax.add_line(Line2D([], [], linestyle="none", label=f"{n_stopped} trial(s) stopped early, not shown"))
    if n_failed:
        ax.add_line(Line2D([], [], linestyle="none", label=f"{n_failed} failed trial(s) not shown"))
    if not completed:
        ax.text(
            0.5,
            0.5,
            "no completed trials",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )

    ys = [float(r[y_key]) for r in completed]
    if target is not None and ys and min(ys) < target - _ZOOM_POINTS:
        # a collapsed model (e.g. the sub-model tau rejected) would squash the interesting band:
        # zoom to it and mark the models below the axis at its bottom edge
        bottom = min([y for y in ys if y >= target - _ZOOM_POINTS] + [target]) - 1.0
        below = [r for r in completed if float(r[y_key]) < bottom]
        top = max(ys + [target] + ([float(teacher[y_key])] if teacher is not None else []))
        ax.set_ylim(bottom, top + 0.5)
        ax.scatter([float(r[x_key]) for r in below], [bottom] * len(below), marker="v", s=40,
                   color="0.45", clip_on=False, label=f"below {bottom:.1f}% ({len(below)})", zorder=2)
    if xs and min(xs) > 0 and max(xs) / min(xs) > 10:
        ax.set_xscale("log")
    else:
        ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel(AXIS_LABELS[x_key])
    ax.set_ylabel(AXIS_LABELS[y_key])
    ax.set_title(title or f"validation accuracy vs {AXIS_LABELS[x_key]}")
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small", framealpha=0.9)
    fig.tight_layout()
    return fig


def _infer_kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in present):
        return "int"
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return "float"
    return "str"


def rebuild_front(
    run_dirs: Sequence[str | os.PathLike], *, objectives: Sequence[str],
    out: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
) -> list[dict]:
    """The front over the models of one or more search folders (``raytailor pareto``)."""
    objective_columns(objectives)  # validates the names
    tables = [Path(d) / TRIALS_FILE for d in run_dirs]
    for table in tables:
        if not table.is_file():
            raise ExportError(f"{str(table.parent)!r} is not a search folder ({TRIALS_FILE} is missing)")
    rows = mark_front(combine_rows([(t.resolve().parent.name, model_rows(t.parent)) for t in tables]), objectives)
    front = [row for row in rows if row["on_front"]]
    if out is not None:
        names = [k for k in rows[0] if k not in RESERVED_COLUMNS] if rows else []
        kinds = {name: _infer_kind([row.get(name) for row in rows]) for name in names}
        write_trials_table(front, out, hyperparameters=kinds,
                           metadata={"sources": ",".join(str(d) for d in run_dirs)})
    if plot is not None:
        plot_front(rows, plot, objectives=objectives, title=f"{len(rows)} models from {len(tables)} search(es)")
    return front
