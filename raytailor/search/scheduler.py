"""Which trials stop early, inside Ray Tune: a trial scheduler around the early-stopping rules
(``early_stopping.EarlyStopping``) and the search's budget (``budget.EpochBudget``).

Trials run first-in first-out, like Tune's default; each per-epoch result that carries an
estimate (``estimate/...``, see trainable.py) goes to the rules, each training epoch to the
budget, and a trial that either stops ends at once (Tune marks it TERMINATED; its last result has no
``finished``, so the searcher tells Optuna it was PRUNED and the tables say STOPPED, with the
reason from the record file). Once the budget is spent, the scheduler posts it on the search's
bulletin (``bulletin.SearchBulletin``), so that trials with candidates ready end with them; a
trial with candidates ready that the rules would stop is posted wound up on it, and ends with
them the same way (it is stopped only if it trains more than one epoch after).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from raytailor.methods import CANDIDATES_READY
from raytailor.search.budget import EpochBudget
from raytailor.search.early_stopping import EarlyStopping
from raytailor.search.trainable import BEST_VAL_ACCURACY, EPOCHS, ESTIMATE, RESTORED_EPOCHS, is_finished, ran_to_its_end


class ConstrainedEarlyStopping(FIFOScheduler):
    """Holds only plain settings and the records' paths when pickled (Tune saves the scheduler
    with the experiment; nothing reads that back); the decisions live in the record files, which
    a resumed search reads. ``record`` None: no early-stopping rules (only the budget).
    ``bulletin``: where the budget is posted spent and trials wound up (anything with ``spend()``
    and ``wind_up(trial)``; not pickled)."""

    _supports_buffered_results = False  # decide on every epoch's result as it arrives

    def __init__(self, *, record: Path | None, budget: EpochBudget | None = None, bulletin: Any = None,
                 **settings: Any) -> None:
        super().__init__()
        self.record, self.settings, self.budget, self.bulletin = record, settings, budget, bulletin
        self._posted = False
        self._rules: EarlyStopping | None = None

    @property
    def rules(self) -> EarlyStopping | None:
        if self._rules is None and self.record is not None:
            self._rules = EarlyStopping(record=Path(self.record), **self.settings)
        return self._rules

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # judged on the estimates, whatever the searcher optimises

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if EPOCHS not in result:
            return TrialScheduler.CONTINUE
        estimate = {key[len(ESTIMATE) + 1:]: value for key, value in result.items()
                    if key.startswith(f"{ESTIMATE}/")}
        if self.budget is not None and not is_finished(result):
            stop = self.budget.on_report(trial.trial_id, int(result[EPOCHS]), estimate=estimate,
                                         candidates_ready=bool(result.get(CANDIDATES_READY)))
            if self.budget.exhausted and not self._posted and self.bulletin is not None:
                self.bulletin.spend()
                self._posted = True
            if stop is not None:
                return TrialScheduler.STOP
        if self.rules is None:
            return TrialScheduler.CONTINUE
        epochs = int(result[EPOCHS])
        judged = self.rules.wound_up.get(trial.trial_id)  # ending with its candidates: one more epoch at most
        if judged is not None:
            if epochs - judged.epochs <= 1 or is_finished(result):
                return TrialScheduler.CONTINUE
            self.rules.stop_anyway(trial.trial_id, epochs)
            return TrialScheduler.STOP
        if not estimate:
            return TrialScheduler.CONTINUE
        stop = self.rules.on_estimate(trial.trial_id, epochs, estimate, restored=int(result.get(RESTORED_EPOCHS, 0)))
        if stop is None:
            return TrialScheduler.CONTINUE
        if result.get(CANDIDATES_READY) and self.bulletin is not None:  # stopping it would lose them
            self.rules.wind_up(trial.trial_id)
            self.bulletin.wind_up(trial.trial_id)
            return TrialScheduler.CONTINUE
        return TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        # a trial cut short (ended with its ready models) did not run to its end: what it gained
        # is no margin for others, and it stays wound up (its reason in the tables)
        if self.rules is not None and result and ran_to_its_end(result) and BEST_VAL_ACCURACY in result:
            self.rules.on_finished(trial.trial_id, float(result[BEST_VAL_ACCURACY]))

    def debug_string(self) -> str:
        said = [] if self.rules is None else [
            f"Early stopping: {len(self.rules.stopped)} trial(s) stopped, {len(self.rules.finished)} finished."]
        if self.budget is not None:
            said.append(f"Budget: {self.budget.spent:,.0f} of {self.budget.limit:,} epochs spent.")
        return " ".join(said)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rules": None, "bulletin": None}
