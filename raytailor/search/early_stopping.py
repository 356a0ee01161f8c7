"""Constraint-aware multi-objective early stopping: the decisions, with no Ray in them.

A trial is judged at *rungs*, after ``grace_epochs * reduction_factor**i`` training epochs
(every stage counts: student, fine-tune, TransTailor factors and steps), on its latest
*estimate* (``raytailor.methods``): validation accuracy so far and the costs of the model it
would produce. At a rung, a trial is stopped when

1. **it cannot become feasible**: its accuracy plus the largest gain a finished trial as lean
   as it or leaner made from that rung to its best sub-model (0 if none gained), plus ``slack``
   points, is still below the accuracy target. The margin is learned from trials that
   finished, and only from those whose estimate at that rung cost no more than the judged
   one's on every cost: a leaner trial's estimate starts lower (its pruning takes more paths
   from an attention still training) and it gains more in its fine-tune, so what costlier
   trials gained says little of it (replayed on the demo's searches, the margin learned from
   every finished trial stopped the search's leanest feasible model in 3 of 4;
   ``benchmarks/early_stopping_replay.py``). No trial is stopped this way before
   ``min_finished`` of those have a record at that rung; or
2. **it cannot reach the front**: among every estimate recorded at that rung (this search's
   trials, stopped ones too), at least one dominates it on (accuracy, the spec's costs) and is
   more accurate by more than the validation set can tell apart (``dominance_se`` standard
   errors of the difference of two accuracies measured on ``val_images`` images), and it is
   not in the best ``1 / reduction_factor`` of them by non-dominated rank. A trial that nothing
   dominates that clearly at its rung is never stopped by this rule (MOASHA keeps the top of
   the non-dominated sort the same way; ASHA is its one-objective case). On 143 validation
   images two estimates near 85 % are one standard error apart at 4.2 points: replayed on the
   demo's searches, dominance by any amount stopped 3 of 16 trials that ended feasible, at
   estimates a few images apart (``benchmarks/early_stopping_replay.py``).

Points that rule 1 would stop take no part in rule 2's ranking. A trial judged to stop that has
candidates ready (a NetTailor pruning fine-tuned, a TransTailor step done) is not stopped, which
would lose them: it ends with them (``wind_up``; the scheduler tells it through the search's
bulletin), and is stopped after all only if it trains on (``stop_anyway``). Every decision, the records
of each rung and the finished trials' best accuracies are kept in a JSON file
(``early_stopping.json`` in the search folder), so a resumed search keeps them, and the tables
say where and why each trial stopped.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RECORD_FILE = "early_stopping.json"


@dataclass(frozen=True)
class Point:
    """A trial's estimate at a rung: accuracy (percent, higher is better) and costs (lower)."""

    epochs: int
    accuracy: float
    costs: tuple[float, ...]


@dataclass
class Stop:
    rung: int
    epochs: int
    reason: str  # "stopped at epoch N: <why>"
    estimate: dict[str, float] = field(default_factory=dict)

    @property
    def why(self) -> str:
        """The judgement without where it was made."""
        return self.reason.partition(": ")[2] or self.reason


class EarlyStopping:
    def __init__(
        self, *, costs: list[str], accuracy_target: float, reduction_factor: float = 3.0,
        grace_epochs: int = 2, min_finished: int = 2, slack: float = 1.0, dominance_se: float = 1.0,
        val_images: int | None = None, record: Path | None = None,
    ) -> None:
        """``val_images``: how many validation images the accuracies are measured on (None: no
        noise allowance, any accuracy difference counts)."""
        self.costs = list(costs)
        self.accuracy_target = accuracy_target
        self.reduction_factor, self.grace_epochs = reduction_factor, grace_epochs
        self.min_finished, self.slack = min_finished, slack
        self.dominance_se, self.val_images = dominance_se, val_images
        self.record = Path(record) if record is not None else None
        self.rungs: dict[int, dict[str, Point]] = {}
        self.finished: dict[str, float] = {}  # trial -> best validation accuracy of its sub-models
        self.stopped: dict[str, Stop] = {}
        self.wound_up: dict[str, Stop] = {}  # judged to stop, ending with the candidates it had ready
        self._judged: dict[str, tuple[int, int]] = {}  # trial -> (last rung judged, last epochs seen)
        if self.record is not None and self.record.is_file():
            self._load(json.loads(self.record.read_text()))

    # ---- rungs ---------------------------------------------------------------------------------
    def rung_at(self, epochs: int) -> int | None:
        """The highest rung at or below ``epochs`` (None before the first)."""
        if epochs < self.grace_epochs:
            return None
        rung = self.grace_epochs
        while (following := max(rung + 1, math.floor(rung * self.reduction_factor))) <= epochs:
            rung = following
        return rung

    def margin(self, rung: int, point: Point | None = None) -> float | None:
        """Accuracy points a trial at ``rung`` with the estimate ``point`` may still gain, learned
        from the finished trials as lean as it or leaner there (``point`` None: from every
        finished trial); None while fewer than ``min_finished`` of those passed that rung."""
        points = self.rungs.get(rung, {})
        gains = [best - points[t].accuracy for t, best in self.finished.items() if t in points
                 and (point is None or all(c <= own for c, own in zip(points[t].costs, point.costs)))]
        if len(gains) < max(1, self.min_finished):
            return None
        return max(0.0, *gains) + self.slack  # a trial at or above the target is never "below" it

    # ---- decisions -----------------------------------------------------------------------------
    def on_estimate(self, trial: str, epochs: int, estimate: dict[str, float], *, restored: int = 0) -> Stop | None:
        """A trial's estimate after ``epochs`` training epochs; a ``Stop`` if it should stop.
        ``restored``: the epochs of the checkpoint the trial continued from (the rungs up to
        there were passed before it was interrupted)."""
        if not all(math.isfinite(estimate[k]) for k in ("val_accuracy", *self.costs)):
            return None  # a diverged run fails by itself
        rung = self.rung_at(epochs)
        last_rung, last_epochs = self._judged.get(trial, (0, 0))
        if trial not in self._judged or epochs < last_epochs:  # new, or started again (retry, resume)
            last_rung = (self.rung_at(restored) or 0) if restored else 0
        self._judged[trial] = (last_rung, epochs)
        if rung is None or rung <= last_rung:
            return None
        self._judged[trial] = (rung, epochs)
        point = Point(epochs, float(estimate["val_accuracy"]), tuple(float(estimate[c]) for c in self.costs))
        self.rungs.setdefault(rung, {})[trial] = point
        stop = self._judge(trial, rung, point)
        if stop is not None:
            stop.estimate = dict(estimate)
            self.stopped[trial] = stop
        self._save()
        return stop

    def on_finished(self, trial: str, best_accuracy: float) -> None:
        """A trial ran to its end (a trial judged at the epoch that completed its last model
        included: it was wound up and ended as it would have); ``best_accuracy``: its most
        accurate sub-model's (validation)."""
        self.wound_up.pop(trial, None)
        self.stopped.pop(trial, None)
        if math.isfinite(best_accuracy):
            self.finished[trial] = float(best_accuracy)
        self._save()

    def wind_up(self, trial: str) -> None:
        """The trial just judged to stop has candidates ready and ends with them instead."""
        self.wound_up[trial] = self.stopped.pop(trial)
        self._save()

    def stop_anyway(self, trial: str, epochs: int) -> Stop:
        """A trial wound up kept training: it is stopped after all, at ``epochs``."""
        judged = self.wound_up.pop(trial)
        self.stopped[trial] = stop = Stop(judged.rung, epochs, (
            f"stopped at epoch {epochs}: judged at epoch {judged.epochs} (with sub-models ready, it trained on "
            f"instead of ending with them): {judged.why}"), judged.estimate)
        self._save()
        return stop

    def forget(self, kept_epochs: dict[str, int]) -> None:
        """Drop the estimates interrupted trials made after ``kept_epochs[trial]`` training epochs
        (a resume runs each again under a new id, from the state it kept at that point: the new
        trial estimates the rest again)."""
        for points in self.rungs.values():
            for trial, kept in kept_epochs.items():
                if trial in points and points[trial].epochs > kept:
                    del points[trial]
        for trial in kept_epochs:
            self._judged.pop(trial, None)
            self.stopped.pop(trial, None)
            self.wound_up.pop(trial, None)
        self._save()

    def _judge(self, trial: str, rung: int, point: Point) -> Stop | None:
        margin = self.margin(rung, point)
        if margin is not None and point.accuracy + margin < self.accuracy_target:
            return Stop(rung, point.epochs, (
                f"stopped at epoch {point.epochs}: val accuracy {point.accuracy:.2f}% is "
                f"{self.accuracy_target - point.accuracy:.2f} points below the target {self.accuracy_target:.2f}%, "
                f"more than finished trials as lean gained from this epoch on ({margin - self.slack:.2f}) "
                f"+ {self.slack:g} points slack"))  # gains below 0 count as 0
        others = {t: p for t, p in self.rungs[rung].items() if t != trial and (
            (own := self.margin(rung, p)) is None or p.accuracy + own >= self.accuracy_target)}
        if not others:
            return None
        ids = [trial, *others]
        points = np.array([[p.accuracy, *p.costs] for p in [point, *others.values()]])
        ranks = _nondominated_ranks(points)
        if ranks[0] == 0:
            return None
        keep = math.ceil(len(ids) / self.reduction_factor)
        better = int((ranks < ranks[0]).sum())
        if better < keep:
            return None
        dominating = [ids[i] for i in range(1, len(ids)) if self._clearly_dominates(points[i], points[0])]
        if not dominating:
            return None
        costs = "".join(f", {c} {v:,.0f}" for c, v in zip(self.costs, point.costs))
        return Stop(rung, point.epochs, (
            f"stopped at epoch {point.epochs}: val accuracy {point.accuracy:.2f}%{costs}"
            f" is dominated{self._beyond_noise()} by {len(dominating)} of the {len(ids) - 1} other trials at this rung "
            f"(e.g. {dominating[0]}) and not in their best 1/{self.reduction_factor:g}"))

    def _clearly_dominates(self, a: np.ndarray, b: np.ndarray) -> bool:
        """``a`` dominates ``b`` and is more accurate by ``dominance_se`` standard errors of the
        difference of two binomial accuracies on ``val_images`` images (either way of rounding
        a proportion of 0 or 1 counts as one image's worth of variance)."""
        if not _dominates(a, b):
            return False
        if not self._allows_noise:
            return True
        n = self.val_images
        variance = sum(max(p * (1 - p), 1 / n) for p in (a[0] / 100, b[0] / 100)) / n
        return a[0] - b[0] >= self.dominance_se * 100 * math.sqrt(variance)

    @property
    def _allows_noise(self) -> bool:
        return bool(self.val_images) and self.dominance_se > 0

    def _beyond_noise(self) -> str:
        if not self._allows_noise:
            return ""
        return f" (more than {self.dominance_se:g} standard errors on {self.val_images} validation images)"

    # ---- record --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "settings": {"costs": self.costs, "accuracy_target": self.accuracy_target,
                         "reduction_factor": self.reduction_factor, "grace_epochs": self.grace_epochs,
                         "min_finished": self.min_finished, "slack": self.slack,
                         "dominance_se": self.dominance_se, "val_images": self.val_images},
            "rungs": {str(r): {t: asdict(p) for t, p in points.items()} for r, points in sorted(self.rungs.items())},
            "finished": self.finished,
            "stopped": {t: asdict(s) for t, s in self.stopped.items()},
            "wound_up": {t: asdict(s) for t, s in self.wound_up.items()},
        }

    def _load(self, saved: dict[str, Any]) -> None:
        self.rungs = {int(r): {t: Point(p["epochs"], p["accuracy"], tuple(p["costs"])) for t, p in points.items()}
                      for r, points in saved.get("rungs", {}).items()}
        self.finished = {t: float(v) for t, v in saved.get("finished", {}).items()}
        self.stopped = {t: Stop(**s) for t, s in saved.get("stopped", {}).items()}
        self.wound_up = {t: Stop(**s) for t, s in saved.get("wound_up", {}).items()}

    def _save(self) -> None:
        if self.record is None:
            return
        tmp = self.record.with_name(f".{self.record.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, self.record)


def stopped_trials(record: Path, *, kind: str = "stopped") -> dict[str, Stop]:
    """The trials early stopping stopped (``kind`` "wound_up": judged to stop, ended with the
    candidates they had ready), by trial id, from its record file (none if absent)."""
    record = Path(record)
    if not record.is_file():
        return {}
    return {t: Stop(**s) for t, s in json.loads(record.read_text()).get(kind, {}).items()}


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Column 0 is maximised, the others minimised."""
    sign = np.array([-1.0] + [1.0] * (len(a) - 1))
    return bool(((a * sign) <= (b * sign)).all() and ((a * sign) < (b * sign)).any())


def _nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: rank 0 for the front, 1 for the front of the rest, ..."""
    from raytailor.pareto import non_dominated

    senses = ["max"] + ["min"] * (points.shape[1] - 1)
    ranks = np.full(len(points), -1)
    rank = 0
    while (ranks < 0).any():
        left = np.flatnonzero(ranks < 0)
        ranks[left[non_dominated(points[left], senses)]] = rank
        rank += 1
    return ranks
