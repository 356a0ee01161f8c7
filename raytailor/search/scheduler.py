"""Early stopping inside Ray Tune: a trial scheduler around ``early_stopping.EarlyStopping``.

Trials run first-in first-out, like Tune's default; each per-epoch result that carries an
estimate (``estimate/...``, see trainable.py) goes to the rules, and a trial they stop ends at
once (Tune marks it TERMINATED; its last result has no ``finished``, so the searcher tells
Optuna it was PRUNED and the tables say STOPPED, with the reason from the record file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from raytailor.search.early_stopping import EarlyStopping
from raytailor.search.trainable import BEST_VAL_ACCURACY, EPOCHS, ESTIMATE, RESTORED_EPOCHS, is_finished


class ConstrainedEarlyStopping(FIFOScheduler):
    """Holds only plain settings and the record's path when pickled (Tune saves the scheduler
    with the experiment; nothing reads that back); the decisions live in the record file, which a
    resumed search reads."""

    _supports_buffered_results = False  # decide on every epoch's result as it arrives

    def __init__(self, *, record: Path, **settings: Any) -> None:
        super().__init__()
        self.record, self.settings = Path(record), settings
        self._rules: EarlyStopping | None = None

    @property
    def rules(self) -> EarlyStopping:
        if self._rules is None:
            self._rules = EarlyStopping(record=self.record, **self.settings)
        return self._rules

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # judged on the estimates, whatever the searcher optimises

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        estimate = {key[len(ESTIMATE) + 1:]: value for key, value in result.items()
                    if key.startswith(f"{ESTIMATE}/")}
        if not estimate or EPOCHS not in result:
            return TrialScheduler.CONTINUE
        stop = self.rules.on_estimate(trial.trial_id, int(result[EPOCHS]), estimate,
                                      restored=int(result.get(RESTORED_EPOCHS, 0)))
        return TrialScheduler.CONTINUE if stop is None else TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if result and is_finished(result) and BEST_VAL_ACCURACY in result:
            self.rules.on_finished(trial.trial_id, float(result[BEST_VAL_ACCURACY]))

    def debug_string(self) -> str:
        return f"Early stopping: {len(self.rules.stopped)} trial(s) stopped, {len(self.rules.finished)} finished."

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rules": None}
