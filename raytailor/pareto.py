"""Pareto fronts of a search: which models are worth keeping, and the front over searches.

Model selection only ever looks at ``val_accuracy``: the objective "accuracy" always means
validation accuracy, never test accuracy, so the test split stays an unbiased estimate of the
chosen model. A row counts for the front only if it is *completed* (status ``TERMINATED`` and
every metric the front looks at is finite) and *feasible* (it met the search constraints).
Failed or infeasible trials are kept in the tables and the plot, but never selected; so are
trials early stopping ended (status ``STOPPED``, with a ``reason``; their metrics are the last
estimate, the validation accuracy so far and the projected costs, and they have no test
accuracy). The tables are ``trials_table.py``, the picture ``front_plot.py``.
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

_BLOCK = 512  # rows per block in non_dominated: bounds memory to _BLOCK * n * m booleans


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


def target_resolution(accuracy_target: float, max_drop: float, val_images: int) -> str:
    """How finely ``val_images`` validation images judge the accuracy constraint, in one line:
    the points one image is worth and the binomial standard error at the target. Where that
    error is half of ``max_drop`` or more, which models are feasible turns on a few images."""
    p = min(max(accuracy_target / 100, 0.0), 1.0)
    error = 100 * math.sqrt(p * (1 - p) / max(val_images, 1))
    line = (f"{val_images:,} validation images: one is {100 / max(val_images, 1):.2f} points, the standard "
            f"error at the target {error:.2f}")
    if error >= max_drop / 2:
        line += (f", at least half of target.max_drop ({max_drop:g}): feasibility turns on a few images "
                 "(more with data.val_fraction)")
    return line


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


def finite_number(value: Any) -> bool:
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
        and all(finite_number(row.get(key)) for key in keys)
    )


def is_completed(row: dict, keys: Sequence[str]) -> bool:
    return row.get("status") == COMPLETED_STATUS and all(finite_number(row.get(key)) for key in keys)


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


def rebuild_front(
    run_dirs: Sequence[str | os.PathLike], *, objectives: Sequence[str],
    out: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
) -> list[dict]:
    """The front over the models of one or more search folders (``raytailor pareto``)."""
    from raytailor.front_plot import plot_front
    from raytailor.trials_table import (
        RESERVED_COLUMNS,
        TRIALS_FILE,
        combine_rows,
        infer_kind,
        model_rows,
        write_trials_table,
    )

    objective_columns(objectives)  # validates the names
    tables = [Path(d) / TRIALS_FILE for d in run_dirs]
    for table in tables:
        if not table.is_file():
            from raytailor.search.location import task_folders_hint

            raise ExportError(f"{str(table.parent)!r} is not a search folder ({TRIALS_FILE} is missing)"
                              + task_folders_hint(table.parent))
    rows = mark_front(combine_rows([(t.resolve().parent.name, model_rows(t.parent)) for t in tables]), objectives)
    front = [row for row in rows if row["on_front"]]
    if out is not None:
        names = [k for k in rows[0] if k not in RESERVED_COLUMNS] if rows else []
        kinds = {name: infer_kind([row.get(name) for row in rows]) for name in names}
        write_trials_table(front, out, hyperparameters=kinds,
                           metadata={"sources": ",".join(str(d) for d in run_dirs)})
    if plot is not None:
        teacher, max_drop = shared_reference([Path(d) for d in run_dirs])
        plot_front(rows, plot, objectives=objectives, teacher=teacher, max_drop=max_drop,
                   title=f"{len(rows)} models from {len(tables)} search(es)")
    return front


def shared_reference(run_dirs: Sequence[Path]) -> tuple[dict | None, float | None]:
    """The teacher and the target's ``max_drop`` the searches share, as the search's own plot
    draws them; (None, None) when they differ (other tasks, other targets) or are unknown."""
    import json

    import yaml

    references = set()
    for run_dir in run_dirs:
        try:
            teacher = json.loads((run_dir / "teacher.json").read_text())
            spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
            references.add((float(teacher["val_accuracy"]), int(teacher["macs"]), int(teacher["params"]),
                            float(spec["target"]["max_drop"])))
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
            return None, None
    if len(references) != 1:
        return None, None
    ((val_accuracy, macs, params, max_drop),) = references
    return {"val_accuracy": val_accuracy, "macs": macs, "params": params, "task_params": params}, max_drop
