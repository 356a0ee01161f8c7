"""From finished trials to the search outputs: trials/pareto tables, plot, front models."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from raytailor.front_plot import plot_front
from raytailor.methods import CUT_SHORT as CUT_SHORT_METRIC
from raytailor.pareto import STOPPED_STATUS, leanest, leanest_cost, mark_front, meets_target, submodel_id
from raytailor.run import submodel_dir
from raytailor.search.budget import BUDGET_FILE, EpochBudget
from raytailor.search.early_stopping import RECORD_FILE, Stop, stopped_trials
from raytailor.search.location import TASK, experiment_path, task_of
from raytailor.search.space import is_integer_range
from raytailor.search.trainable import BEST_VAL_ACCURACY, EPOCHS, FAILED, FINISHED, best_val_accuracy, is_finished
from raytailor.search.trial_folders import TrialRecord, local_folder, read_trials
from raytailor.spec import Spec
from raytailor.trials_table import SUBMODELS_FILE, TRIALS_FILE, write_trials_table

METRICS = ("val_accuracy", "test_accuracy", "params", "macs", "task_params")


def hyperparameter_types(spec: Spec) -> dict[str, str]:
    types = {}
    for name, param in spec.space.items():
        if param.choices is not None:
            kinds = {type(c) for c in param.choices}
            types[name] = ("bool" if kinds == {bool} else "int" if kinds == {int}
                           else "float" if kinds <= {int, float} else "str")
        else:
            types[name] = "int" if is_integer_range(param) else "float"
    return types


CUT_SHORT = "ended with the sub-models it had ready"  # how the reason of a trial cut short begins
CUT_SHORT_REASON = f"{CUT_SHORT}: the search's budget was spent"


def cut_short_reason(stop: Stop | None) -> str:
    """The reason of a trial that ended with the sub-models it had ready: early stopping's
    judgement (``stop``, recorded as wound up), else the spent budget."""
    if stop is None:
        return CUT_SHORT_REASON
    return f"{CUT_SHORT} at epoch {stop.epochs}, early stopping's call: {stop.why}"


def trial_row(trial_id: str, config: dict, metrics: dict | None, error: str | None, spec: Spec,
              stop: Stop | None = None) -> dict[str, Any]:
    """One trial's row. ``error``: what the trial raised (Ray's error.txt). A trial early stopping
    ended (``stop``) is ``STOPPED`` with its reason and its last estimate as metrics (validation
    accuracy so far, projected costs; no test accuracy). A trial the budget or early stopping cut
    short (``stop``: early stopping's, recorded as wound up) finished with the sub-models it had
    (``TERMINATED``), and its reason says so."""
    metrics = metrics or {}
    failed = metrics.get(FAILED)  # failed by itself: its one-line reason is in its last report
    done = is_finished(metrics) and not failed  # a final report wins over failures Tune retried
    stopped = stop is not None and not done and not error and not failed
    status = "TERMINATED" if done else "ERROR" if error or failed else STOPPED_STATUS if stopped else "INTERRUPTED"
    cut_short = done and metrics.get(CUT_SHORT_METRIC)
    row = {"trial_id": trial_id, "status": status, "submodel": None, "chosen": done,
           "reason": stop.reason if stopped else cut_short_reason(stop) if cut_short else failed or error_reason(error),
           "trained_epochs": metrics.get(EPOCHS)}
    row |= {name: config.get(name) for name in spec.space}
    values = metrics if done else stop.estimate if stopped else {}
    for key in METRICS:
        value = values.get(key)
        row[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    row["feasible"] = bool(done and metrics.get("feasible"))
    return row


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MODULE_PATH = re.compile(r"^(?:\w+\.)+(?=\w+: )")  # raytailor.errors.TailoringError: -> TailoringError:


def error_reason(error: str | None) -> str | None:
    """One line for a failed trial: the last line of the error Ray saved (our own errors end in
    ``TailoringError: <what happened and what to change>``), without terminal colour codes."""
    if not error:
        return None
    lines = [line.strip() for line in _ANSI.sub("", error).splitlines() if line.strip()]
    return _MODULE_PATH.sub("", lines[-1]) if lines else "the trial failed"


def rows_from_trials(records: list[TrialRecord], spec: Spec, accuracy_target: float, *,
                     stopped: dict[str, Stop] | None = None, wound_up: dict[str, Stop] | None = None,
                     ) -> tuple[list[dict], dict[str, tuple[TrialRecord, str]]]:
    """Rows and {row id: (its trial, the run folder inside the trial's checkpoint)} from a search's trial
    folders (``trial_folders.read_trials``); ``stopped``: the trials early stopping or the budget
    ended (``stopped_in``); ``wound_up``: those early stopping ended with their ready sub-models.

    A finished trial contributes one row per sub-model (read from the checkpoint's result.json;
    a sub-model's own hyper-parameters, a NetTailor pruning's theta and K, replace the trial's);
    only the sub-models it kept have weights to export."""
    by_trial, checkpoints = {}, {}
    for record in records:
        trial_id, metrics = record.trial_id, final_metrics(record, accuracy_target)
        # wound up: cut short with its models if it finished, else stopped where it was judged
        stop = (stopped or {}).get(trial_id) or (wound_up or {}).get(trial_id)
        row = trial_row(trial_id, record.config, metrics, record.error, spec, stop=stop)
        finished = row["status"] == "TERMINATED" and record.checkpoint is not None
        chain = checkpoint_submodels(record.saved_result()) if finished else None
        rows = by_trial[trial_id] = []
        if chain is None:
            rows.append(row)
            if finished:
                checkpoints[trial_id] = (record, ".")
            continue
        chosen = metrics.get("chosen_submodel", metrics.get("chosen_iteration"))
        for saved in chain:
            k = saved["submodel"]
            own = {name: value for name, value in (saved.get("own_hyperparameters") or {}).items()
                   if name in spec.space}
            sub = {**row, **own, **{key: saved.get(key) for key in METRICS}, "trial_id": submodel_id(trial_id, k),
                   "submodel": k, "chosen": k == chosen, "_trial": trial_id,
                   "feasible": meets_target(saved["val_accuracy"], accuracy_target)}
            rows.append(sub)
            if saved.get("kept"):
                checkpoints[sub["trial_id"]] = (record, str(submodel_dir(Path("."), k, chosen=k == chosen)))
    return [row for trial_id in sorted(by_trial) for row in by_trial[trial_id]], checkpoints


def search_records(out_dir: Path, *, known: dict[str, TrialRecord] | None = None) -> list[TrialRecord]:
    """The trials of the search (or, a task folder of a multi-task search, of the task) in ``out_dir``."""
    task = task_of(Path(out_dir))
    return [r for r in read_trials(experiment_path(out_dir), known=known)
            if task is None or r.config.get(TASK) == task]


def stopped_in(folder: Path) -> dict[str, Stop]:
    """The trials of the search (task) in ``folder`` that early stopping or the budget stopped,
    by trial id, from their record files."""
    return stopped_trials(folder / RECORD_FILE) | stopped_trials(folder / BUDGET_FILE)


def wound_up_in(folder: Path) -> dict[str, Stop]:
    """The trials of the search (task) in ``folder`` that early stopping judged to stop while they
    had sub-models ready: they ended with them."""
    return stopped_trials(folder / RECORD_FILE, kind="wound_up")


def search_rows(out_dir: Path, spec: Spec, accuracy_target: float, *, known: dict[str, TrialRecord] | None = None
                ) -> tuple[list[TrialRecord], list[dict], dict[str, tuple[TrialRecord, str]]]:
    """(records, rows, checkpoints) of the search in ``out_dir``, read from its trial folders
    (``known``: records of ended trials, by folder, not read again) with its early stops."""
    records = search_records(out_dir, known=known)
    rows, checkpoints = rows_from_trials(records, spec, accuracy_target,
                                         stopped=stopped_in(Path(out_dir)), wound_up=wound_up_in(Path(out_dir)))
    return records, rows, checkpoints


def final_metrics(record: TrialRecord, accuracy_target: float) -> dict[str, Any]:
    """The trial's last report; for a trial whose final report never reached its folder (the
    driver was killed before Tune copied result.json) but whose checkpoint did, the final metrics
    rebuilt from the checkpoint (the trial reports a checkpoint with its final report only)."""
    metrics = record.metrics
    if is_finished(metrics) or FAILED in metrics or record.checkpoint is None:
        return metrics
    saved = record.saved_result()
    if not isinstance(saved.get("val_accuracy"), (int, float)):
        return metrics
    return {**metrics, **{k: v for k, v in saved.items() if isinstance(v, (int, float, str, bool))},
            "feasible": meets_target(saved["val_accuracy"], accuracy_target),
            BEST_VAL_ACCURACY: best_val_accuracy(checkpoint_submodels(saved), saved["val_accuracy"]), FINISHED: True}


def checkpoint_submodels(saved: dict) -> list[dict] | None:
    """The sub-models listed in a trial's saved result.json (``chain`` in searches written before
    every method had sub-models); None for trials written before sub-models were measured (no
    ``submodel`` key), which stay one row."""
    chain = saved.get("submodels", saved.get("chain"))
    return chain if chain and all("submodel" in record for record in chain) else None


def write_tables(out_dir: Path, rows: list[dict], spec: Spec, metadata: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """trials.parquet, submodels.parquet and pareto.parquet from ``rows`` (front marked); each
    replaced atomically, so one that cannot be written (a full disk) leaves the previous one.
    Returns (one row per trial, the front)."""
    types = hyperparameter_types(spec)
    trials = [{**r, "trial_id": r.get("_trial", r["trial_id"])} for r in rows
              if r["chosen"] or r["status"] != "TERMINATED"]
    write_trials_table(trials, out_dir / TRIALS_FILE, hyperparameters=types, metadata=metadata)
    submodels = [r for r in rows if r["submodel"] is not None]
    if submodels:
        write_trials_table(submodels, out_dir / SUBMODELS_FILE, hyperparameters=types, metadata=metadata)
    front = [r for r in rows if r["on_front"]]
    write_trials_table(front, out_dir / "pareto.parquet", hyperparameters=types, metadata=metadata)
    return trials, front


def write_outputs(out_dir: Path, rows: list[dict], checkpoints: dict, spec: Spec, teacher: dict,
                  metadata: dict[str, str], verbose: bool = True) -> dict | None:
    """trials.parquet (one row per trial), submodels.parquet (one row per sub-model),
    pareto.parquet + pareto.png + models/<id>/ (the front over every model); returns the leanest
    row."""
    rows = mark_front(rows, spec.objectives)
    trials, front = write_tables(out_dir, rows, spec, metadata)
    plot_front(rows, out_dir / "pareto.png", objectives=spec.objectives, teacher=teacher,
               max_drop=spec.target.max_drop, title=f"{spec.name}: {len(rows)} models")
    models = out_dir / "models"
    for row in front:
        if row["trial_id"] not in checkpoints:
            continue
        record, inside = checkpoints[row["trial_id"]]
        target = models / row["trial_id"]
        if target.exists():
            shutil.rmtree(target)
        with local_folder(record, record.checkpoint) as folder:
            shutil.copytree(folder / inside / "model", target)
            shutil.copy(folder / inside / "result.json", target / "result.json")
    best = leanest(rows, cost=leanest_cost(spec.objectives))
    trained = sum(r["trained_epochs"] or 0 for r in trials)  # training epochs of every trial
    budget = spec.search.budget_epochs
    # the budget ended the search: no trial fits in what is left (the rule the searcher started trials by)
    spent = budget is not None and not EpochBudget(budget, spent_before=trained,
                                                   trial_epochs=spec.fewest_epochs()).room_for_another
    summary = {"trials": len(trials), "requested": spec.search.trials,
               "completed": sum(r["status"] == "TERMINATED" for r in trials),
               "stopped": sum(r["status"] == STOPPED_STATUS for r in trials),
               "unfinished": 0 if spent else spec.search.trials - sum(
                   r["status"] in ("TERMINATED", "ERROR", STOPPED_STATUS) for r in trials),
               "cut_short": sum((r["reason"] or "").startswith(CUT_SHORT) for r in trials),
               "trained_epochs": trained, "budget_epochs": budget, "budget_spent": spent,
               "models": sum(r["status"] == "TERMINATED" for r in rows),
               "feasible": sum(r["feasible"] for r in rows), "front": len(front), "leanest": best,
               "teacher": teacher}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if verbose:
        print(_describe(summary, spec, out_dir), file=sys.stderr, flush=True)
    return best


def _describe(summary: dict, spec: Spec, out_dir: Path) -> str:
    teacher, best = summary["teacher"], summary["leanest"]
    task = task_of(out_dir)
    tag = "[search]" if task is None else f"[search {task}]"
    search_dir = out_dir if task is None else out_dir.parent
    lines = [
        f"{tag} {summary['completed']}/{summary['trials']} trials completed"
        + (f" ({summary['models']} sub-models)" if summary["models"] != summary["completed"] else "")
        + (f", {summary['stopped']} stopped early (reasons in {TRIALS_FILE})" if summary["stopped"] else "")
        + f", {summary['feasible']} feasible "
        f"(val accuracy >= teacher {teacher['val_accuracy']:.2f}% - {spec.target.max_drop} pts), "
        f"{summary['front']} on the front",
    ]
    if best is None:
        lines.append(f"{tag} no trial met the accuracy target; relax target.max_drop or widen the space")
    else:
        lines.append(
            f"{tag} leanest feasible: {best['trial_id']}  val {best['val_accuracy']:.2f}%  test "
            f"{best['test_accuracy']:.2f}%  params {best['params']:,} ({best['params'] / teacher['params']:.0%} of teacher)  "
            f"MACs {best['macs']:,} ({best['macs'] / teacher['macs']:.0%})"
        )
    if summary["budget_spent"]:
        lines.append(f"{tag} the budget of {summary['budget_epochs']:,} training epochs ended the search after "
                     f"{summary['trials']} of {summary['requested']} trials ({summary['trained_epochs']:,} spent; "
                     f"a trial needs at least {spec.fewest_epochs():,})"
                     + (f"; {n} ended with the models {'it' if n == 1 else 'they'} had ready"
                        if (n := summary.get("cut_short")) else ""))  # absent from searches before it
    if summary["unfinished"] > 0:
        lines.append(f"{tag} interrupted with {summary['unfinished']} trial(s) to go; continue with "
                     f"`raytailor resume {search_dir}` (finished trials are kept)")
    lines.append(f"{tag} front: {out_dir / 'pareto.parquet'}  plot: {out_dir / 'pareto.png'}  "
                 f"models: {out_dir / 'models'}  tensorboard --logdir {experiment_path(out_dir)}")
    return "\n".join(lines)


COMBINED_KEYS = ("trials", "completed", "stopped", "trained_epochs", "models", "feasible", "front")


def write_combined_summary(out_dir: Path, tasks: list[str], *, object_store_bytes: int, separate_bytes: int,
                           verbose: bool = True) -> dict:
    """A multi-task search's summary.json, from its tasks' own: per task the teacher, the
    leanest feasible model and the counts; the totals; and what the tasks' shared data,
    backbone and teachers take in the object store (the backbone stored once) against each task
    holding its own (``separate_bytes``)."""
    per_task = {}
    for task in tasks:
        summary = json.loads((out_dir / task / "summary.json").read_text())
        best = summary["leanest"]
        per_task[task] = {
            "teacher": {k: summary["teacher"].get(k) for k in ("val_accuracy", "test_accuracy", "params", "macs")},
            "leanest": None if best is None else {k: best.get(k) for k in (
                "trial_id", "val_accuracy", "test_accuracy", "params", "macs", "task_params")},
            **{k: summary[k] for k in COMBINED_KEYS},
        }
    totals = {"tasks": len(tasks), **{k: sum(t[k] for t in per_task.values()) for k in COMBINED_KEYS},
              "with_feasible_model": sum(t["leanest"] is not None for t in per_task.values()),
              "object_store_bytes": object_store_bytes, "separate_bytes": separate_bytes}
    combined = {"tasks": per_task, "totals": totals}
    (out_dir / "summary.json").write_text(json.dumps(combined, indent=2, default=str))
    if verbose:
        print(f"[search] {len(tasks)} tasks, {totals['with_feasible_model']} with a feasible model; shared data, "
              f"backbone and teachers {object_store_bytes / 1e6:.1f} MB in the object store "
              f"({separate_bytes / 1e6:.1f} MB if each task held its own); summary: {out_dir / 'summary.json'}",
              file=sys.stderr, flush=True)
    return combined
