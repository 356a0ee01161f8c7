"""Would early stopping have lost this search's best models? Replays finished searches.

Reads searches that ran every trial to its end (``search.early_stopping: none``, e.g. the (a)
searches `search_efficiency.py --keep DIR` keeps) and feeds their trials' per-epoch estimates
and ends, in the order they were reported, to the early-stopping rules
(``raytailor.search.early_stopping.EarlyStopping``, the default settings of
``search.early_stopping`` with ``--grace``/``--reduction``/``--dominance-se`` varied). Nothing is trained. For each setting: the trials it would
have stopped, the training epochs that saves, the trials among them that ended feasible, and
the searches whose leanest feasible model it would have lost. And, per rung of the default
settings, how well a trial's estimate there ranks the validation accuracy it ended with
(Spearman's rho over every trial of the searches given).

    .venv/bin/python benchmarks/early_stopping_replay.py FOLDER [FOLDER ...] [--grace 2 4] [--reduction 3]
        [--dominance-se 0 1]

Timestamps are whole seconds: reports of the same second are replayed in trial order, so the
replay of two trials' reports that close together may differ from the order Tune saw.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
from pathlib import Path

import numpy as np

from raytailor.run import load_data
from raytailor.search.early_stopping import EarlyStopping
from raytailor.search.location import experiment_path
from raytailor.search.trainable import BEST_VAL_ACCURACY, EPOCHS, ESTIMATE, is_finished
from raytailor.search.trial_folders import read_trials
from raytailor.spec import EarlyStoppingSpec, load_search_spec


@dataclasses.dataclass
class Trial:
    id: str
    estimates: list[tuple[int, int, dict[str, float]]]  # (timestamp, epochs, estimate)
    end: tuple[int, int, float] | None  # (timestamp, epochs, best val accuracy) of a finished trial
    val_accuracy: float | None  # the trial's chosen sub-model's, at its end
    feasible: bool
    macs: float | None


def read_search(folder: Path) -> tuple[list[Trial], float, list[str], str | None, int]:
    """(trials, accuracy target, costs, the leanest feasible trial's id or None, the number of
    validation images, from the search's own data)."""
    spec = load_search_spec(folder / "spec.yaml")
    val_images = len(load_data(spec).val)
    target = json.loads((folder / "teacher.json").read_text())["accuracy_target"]
    costs = [objective for objective in spec.objectives if objective != "accuracy"]
    trials = []
    for record in read_trials(experiment_path(folder)):
        estimates, end = [], None
        for report in record.reports:
            estimate = {k[len(ESTIMATE) + 1:]: v for k, v in report.items() if k.startswith(f"{ESTIMATE}/")}
            if estimate and EPOCHS in report:
                estimates.append((int(report["timestamp"]), int(report[EPOCHS]), estimate))
            if is_finished(report) and BEST_VAL_ACCURACY in report:
                end = (int(report["timestamp"]), int(report[EPOCHS]), float(report[BEST_VAL_ACCURACY]))
        last = record.metrics if end is not None else {}
        trials.append(Trial(record.trial_id, estimates, end, last.get("val_accuracy"),
                            bool(last.get("feasible")), last.get("macs")))
    feasible = [t for t in trials if t.feasible and t.macs is not None]
    leanest = min(feasible, key=lambda t: t.macs).id if feasible else None
    return trials, target, costs, leanest, val_images


def replay(trials: list[Trial], rules: EarlyStopping) -> dict[str, tuple[int, str]]:
    """{stopped trial: (the epochs it trained after its stop, the rule: "target" or "front")}. A
    trial judged at its last training epoch is not stopped: that epoch completes its model, and
    a search lets a trial with a model ready end with it."""
    events = [(ts, 0, i, epochs, estimate) for i, t in enumerate(trials) for ts, epochs, estimate in t.estimates]
    events += [(t.end[0], 1, i, t.end[1], t.end[2]) for i, t in enumerate(trials) if t.end is not None]
    saved: dict[str, tuple[int, str]] = {}
    for _, kind, i, epochs, value in sorted(events, key=lambda e: e[:4]):
        trial = trials[i]
        if trial.id in saved:
            continue
        if kind == 1:
            rules.on_finished(trial.id, value)
        elif (stop := rules.on_estimate(trial.id, epochs, value)) is not None:
            if trial.end is not None and epochs >= trial.end[1]:
                rules.wind_up(trial.id)  # its last epoch completes its model: it ends with it (scheduler.py)
                continue
            total = trial.end[1] if trial.end is not None else max(e for _, e, _ in trial.estimates)
            saved[trial.id] = (total - epochs, "front" if "dominated" in stop.reason else "target")
    return saved


def spearman(x: list[float], y: list[float]) -> float:
    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values))
        for value in set(values):  # ties: their mean rank
            tied = np.asarray(values) == value
            ranked[tied] = ranked[tied].mean()
        return ranked

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="search folders run without early stopping")
    parser.add_argument("--grace", type=int, nargs="+", help="grace_epochs to replay (default: search.early_stopping's, 2)")
    parser.add_argument("--reduction", type=float, nargs="+",
                        help="reduction_factor to replay (default: search.early_stopping's, 3)")
    parser.add_argument("--dominance-se", type=float, nargs="+",
                        help="dominance_se to replay (default: search.early_stopping's, 1; 0: dominated by any amount)")
    args = parser.parse_args()
    for folder in args.folders:
        if not (folder / "spec.yaml").is_file() or not (folder / "teacher.json").is_file():
            parser.error(f"{folder} is not a search folder (no spec.yaml or teacher.json)")
    searches = {folder: read_search(folder) for folder in args.folders}
    defaults = dataclasses.asdict(EarlyStoppingSpec())
    settings = [(g, r, z) for g in (args.grace or [defaults["grace_epochs"]])
                for r in (args.reduction or [defaults["reduction_factor"]])
                for z in (args.dominance_se or [defaults["dominance_se"]])]
    for grace, reduction, dominance_se in settings:
        stopped = saved_epochs = trained = lost_leanest = 0
        lost_feasible = {"target": 0, "front": 0}
        replayed = {**defaults, "grace_epochs": grace, "reduction_factor": reduction, "dominance_se": dominance_se}
        for trials, target, costs, leanest, val_images in searches.values():
            saved = replay(trials, EarlyStopping(costs=costs, accuracy_target=target, val_images=val_images, **replayed))
            stopped += len(saved)
            saved_epochs += sum(epochs for epochs, _ in saved.values())
            trained += sum(t.end[1] if t.end else 0 for t in trials)
            for trial in trials:
                if trial.feasible and trial.id in saved:
                    lost_feasible[saved[trial.id][1]] += 1
            lost_leanest += leanest is not None and leanest in saved
        feasible = sum(t.feasible for trials, *_ in searches.values() for t in trials)
        with_leanest = sum(leanest is not None for *_, leanest, _ in searches.values())
        print(f"grace {grace}, reduction {reduction:g}, dominance_se {dominance_se:g}: {stopped} trial(s) stopped, {saved_epochs} of {trained} "
              f"training epochs saved ({saved_epochs / max(trained, 1):.0%}); {sum(lost_feasible.values())} of "
              f"{feasible} trials that ended feasible stopped ({lost_feasible['target']} as unable to reach the "
              f"target, {lost_feasible['front']} as dominated); the leanest feasible model lost in {lost_leanest} of "
              f"{with_leanest} searches")
    rules = EarlyStopping(costs=[], accuracy_target=0.0, **defaults)  # the default rungs
    by_rung: dict[int, tuple[list[float], list[float]]] = {}
    for trials, *_ in searches.values():
        for trial in trials:
            if trial.val_accuracy is None or not math.isfinite(trial.val_accuracy):
                continue
            seen = set()
            for _, epochs, estimate in trial.estimates:
                rung = rules.rung_at(epochs)
                if rung is not None and rung not in seen and "val_accuracy" in estimate:
                    seen.add(rung)
                    by_rung.setdefault(rung, ([], []))[0].append(float(estimate["val_accuracy"]))
                    by_rung[rung][1].append(float(trial.val_accuracy))
    for rung, (at_rung, at_end) in sorted(by_rung.items()):
        if len(at_rung) >= 3:
            print(f"rung {rung} epochs: Spearman's rho between the estimate there and the validation accuracy "
                  f"at the end {spearman(at_rung, at_end):+.2f} over {len(at_rung)} trials "
                  f"(their estimate there: median {statistics.median(at_rung):.1f} %)")


if __name__ == "__main__":
    main()
