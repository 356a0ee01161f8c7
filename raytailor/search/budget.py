"""A search's compute budget in training epochs (``search.budget_epochs``), with no Ray in it.

Trials differ in cost (early stopping ends some after two epochs; a NetTailor trial with a
pruning grid fine-tunes several prunings), so a number of trials says little of the compute a
search spends. A budget says it: the training epochs of all the search's trials together
(every stage counts, as in the tables' ``trained_epochs``). A trial the budget stops leaves no
model, so the budget protects the trials that run: it holds back for each what a trial is
expected to spend, the median epochs of the search's trials that ran to their end, never fewer
than the fewest any trial may spend (``Spec.fewest_epochs``, the method's, e.g. NetTailor's
student and one fine-tune; until a trial has finished, that fewest). A new trial starts when its
fewest fit in what is left after that: until it runs it has cost nothing, and the epochs it
may then lack are ones no other trial would have spent. A trial that needs more than was held
back for it (a student whose leanest pruning misses fine-tunes more) may still be stopped, and
one that needs fewer (stopped early) leaves room for the next. Once the
trials' epochs reach the budget, a running trial stops when it reports the next epoch it trained (the
epoch that crosses the budget goes on: a search exceeds its budget by at most one epoch per
trial that was running); a trial needs more than its fewest when it fine-tunes several
prunings or steps on along its chain. Measuring and saving a trained trial's models is no
epoch: a trial whose last epoch crossed the budget ends normally. A trial that says it has
candidates ready (``methods.CANDIDATES_READY``: a NetTailor student with a pruning fine-tuned)
is not stopped, which would lose them: the scheduler posts the budget spent on the search's
bulletin, and the trial ends with its ready candidates after the epoch it is in or the one
after (the post does not wait); one still training two epochs past its first report beyond
the budget is stopped like any other.

The scheduler and the searcher each keep one ``EpochBudget`` fed with the same reports: the
scheduler stops trials (recording why in ``budget.json``, which the tables read like early
stopping's record), the searcher starts trials only while ``room_for_another``.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from raytailor.search.early_stopping import Stop

BUDGET_FILE = "budget.json"


class EpochBudget:
    def __init__(self, limit: int, *, spent_before: float = 0, record: Path | None = None,
                 trial_epochs: int = 0, finished_before: Iterable[int] = ()) -> None:
        """``spent_before``: the epochs trials of an earlier run of the search spent (a resume
        keeps them); ``record``: where stopped trials are written (None: not written);
        ``trial_epochs``: the fewest a trial spends to its end (``Spec.fewest_epochs``);
        ``finished_before``: the epochs of each kept trial that ran to its end."""
        self.limit, self.spent_before, self.trial_epochs = limit, spent_before, trial_epochs
        self.record = Path(record) if record is not None else None
        self.epochs: dict[str, int] = {}  # trial -> training epochs so far
        self.running: set[str] = set()  # trials started and not ended (``started``/``ended``)
        self.finished: list[int] = list(finished_before)  # epochs of the trials that ran to their end
        self.winding_up: dict[str, int] = {}  # trial -> its first epoch past the budget, candidates ready
        self.stopped: dict[str, Stop] = {}
        if self.record is not None and self.record.is_file():
            saved = json.loads(self.record.read_text()).get("stopped", {})
            self.stopped = {t: Stop(**s) for t, s in saved.items()}

    @property
    def spent(self) -> float:
        return self.spent_before + sum(self.epochs.values())

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.limit

    @property
    def expected_epochs(self) -> float:
        """What a trial is expected to spend to its end: the median of the finished trials'
        epochs, never below the fewest a trial may spend."""
        learned = statistics.median(self.finished) if self.finished else 0
        return max(self.trial_epochs, learned, 1)

    @property
    def room_for_another(self) -> bool:
        """Whether a new trial's fewest epochs fit in the budget once every running trial has
        had what a trial is expected to spend."""
        expected = self.expected_epochs
        owed = sum(max(0.0, expected - self.epochs.get(trial, 0)) for trial in self.running)
        return self.spent + owed + max(self.trial_epochs, 1) <= self.limit

    def started(self, trial: str) -> None:
        self.running.add(trial)

    def ended(self, trial: str, *, finished: bool = False) -> None:
        """``finished``: it ran to its end (not stopped, not failed, not cut short), so its epochs
        teach what a trial spends."""
        if finished and trial in self.running and trial in self.epochs:
            self.finished.append(self.epochs[trial])
        self.running.discard(trial)

    def on_report(self, trial: str, epochs: int, *, estimate: dict[str, float] | None = None,
                  candidates_ready: bool = False) -> Stop | None:
        """A trial's report after ``epochs`` training epochs; a ``Stop`` when it trained an epoch
        though the budget was spent before that epoch, unless it has ``candidates_ready`` and
        is ending with them (at most one more epoch after its first report past the budget)."""
        last = self.epochs.get(trial, 0)
        if epochs <= last:  # no new training epoch (a sub-model measured, the final report, a retry)
            return None
        before = self.spent
        self.epochs[trial] = epochs
        if before < self.limit:
            return None
        if candidates_ready and epochs - self.winding_up.setdefault(trial, epochs) <= 1:
            return None
        stop = Stop(rung=0, epochs=epochs, estimate=dict(estimate or {}), reason=(
            f"stopped at epoch {epochs}: the search's budget of {self.limit:,} training epochs was spent"))
        self.stopped[trial] = stop
        self._save()
        return stop

    def _save(self) -> None:
        if self.record is None:
            return
        data = {"budget_epochs": self.limit, "spent_epochs": self.spent,
                "stopped": {t: asdict(s) for t, s in self.stopped.items()}}
        tmp = self.record.with_name(f".{self.record.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.record)
