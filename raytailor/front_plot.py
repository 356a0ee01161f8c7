"""The picture of a search's front: every model, the front, the teacher and the target line.

Plots use matplotlib's Agg canvas directly (no pyplot, no display, no global backend switch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from raytailor.errors import RaytailorError
from raytailor.pareto import (
    STOPPED_STATUS,
    finite_number,
    is_completed,
    mark_front,
    non_dominated,
    objective_columns,
)

AXIS_LABELS = {
    "macs": "MACs per image",
    "params": "parameters",
    "task_params": "task-specific parameters",
    "val_accuracy": "validation accuracy (%)",
}
_ZOOM_POINTS = 15.0  # models further below the target than this are drawn at the bottom edge




def search_of(row: dict) -> str | None:
    """The search a row of several searches' rows comes from (``combine_rows`` prefixes ids with
    "<search>/"); None for a single search's row."""
    trial_id = str(row.get("trial_id", ""))
    return trial_id.split("/", 1)[0] if "/" in trial_id else None


def search_names(rows: list[dict]) -> list[str]:
    """The searches ``rows`` come from, in order of appearance ([] for one search's rows)."""
    return list(dict.fromkeys(name for name in map(search_of, rows) if name is not None))


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

    Completed trials are grey (hollow if infeasible; one colour per search when ``rows`` come
    from several, ``trials_table.combine_rows``), the Pareto front over ``objectives`` is
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
        if teacher is None or not finite_number(teacher.get(y_key)):
            raise RaytailorError(
                f"max_drop={max_drop!r} needs the teacher's val_accuracy for the target line; "
                "pass teacher={'val_accuracy': ...}"
            )
        target = float(teacher[y_key]) - float(max_drop)

    marked = mark_front(rows, objectives)
    completed = [r for r in marked if is_completed(r, (x_key, y_key))]
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

    searches = search_names(completed)
    colours = {name: f"C{i % 10}" for i, name in enumerate(searches)} if len(searches) > 1 else {None: None}
    for name, colour in colours.items():  # one colour per search when rows come from several
        ok = [r for r in feasible if colour is None or search_of(r) == name]
        bad = [r for r in infeasible if colour is None or search_of(r) == name]
        prefix = f"{name}: " if colour else ""
        if ok:
            ax.scatter(*xy(ok), s=24, color=colour or "0.6", label=f"{prefix}feasible ({len(ok)})", zorder=2)
        if bad:
            ax.scatter(*xy(bad), s=28, facecolors="none", edgecolors=colour or "0.45", linewidths=1.0,
                       label=f"{prefix}infeasible ({len(bad)})", zorder=2)
    if frontier:
        fx, fy = zip(*frontier)
        ax.step(fx, fy, where="post", color="tab:blue", linewidth=1.5, alpha=0.8, zorder=3)
    if front:
        ax.scatter(
            *xy(front),
            s=60,
            color=[colours[search_of(r)] for r in front] if len(colours) > 1 else "tab:blue",
            edgecolors="black",
            linewidths=0.7,
            label=f"Pareto front ({len(front)})",
            zorder=4,
        )
    xs = [float(r[x_key]) for r in completed]
    if teacher is not None and finite_number(teacher.get(x_key)) and finite_number(teacher.get(y_key)):
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
