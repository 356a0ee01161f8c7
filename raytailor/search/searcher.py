"""Constrained multi-objective Optuna inside Ray Tune.

Ray's ``OptunaSearch`` cannot pass constraints, and a trial that reports NaN or no metric stays
RUNNING in the study (Ray only logs the error). This subclass, before telling Optuna:

- sets the accuracy constraint with Optuna 5's ``Trial.set_constraint`` (feasible when <= 0):
  ``target - val_accuracy``, with ``target = teacher val accuracy - max_drop``;
- tells FAIL for errored trials and for missing or non-finite objective values;
- tells PRUNED for trials that early stopping or the budget ended (their last result is not a
  final one), so no stopped trial is left RUNNING or counted as a finished point;
- starts no trial that the search's budget (``search.budget_epochs``) left could not carry to its end.

The study lives in a JournalStorage file, so ``optuna-dashboard`` can open it and a resumed
search continues the same study (a new searcher on the same journal, never a pickle). For the dashboard, every trial also carries the system
attribute ``constraints`` (the list it reads; Optuna 5 itself keeps ``constraints:<name>``),
the study its objective names, and each trial the Ray trial id (user attribute
``ray_trial_id``; a sub-model's trial also ``submodel``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from raytailor.errors import SpecError
from raytailor.search.budget import EpochBudget
from raytailor.search.trainable import EPOCHS, FAILED, SAMPLED, is_finished, ran_to_its_end

if TYPE_CHECKING:
    from raytailor.spec import Spec

CONSTRAINT = "accuracy_target"
DASHBOARD_CONSTRAINTS = "constraints"  # the system attribute optuna-dashboard reads


def set_constraint(trial: optuna.trial.Trial, violation: float) -> None:
    """``target - val_accuracy`` (feasible when <= 0), where Optuna and optuna-dashboard read it."""
    trial.set_constraint(CONSTRAINT, violation)
    trial.storage.set_trial_system_attr(trial._trial_id, DASHBOARD_CONSTRAINTS, [violation])


def make_sampler(name: str, seed: int, trials: int = 100) -> optuna.samplers.BaseSampler:
    """A seeded sampler. TPE's random start-up phase scales with the ``trials`` the search plans
    for (a third, 2 to 10; Optuna's default of 10 random trials would leave a small search with
    no model-based trial at all)."""
    if name == "tpe":
        startup = max(2, min(10, trials // 3))
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise SpecError(f"search.sampler must be one of tpe, nsga2, random, gp, got {name!r}")


def planned_trials(spec: Spec) -> int:
    """The trials a search's sampler plans for (TPE's random start-up scales with them):
    ``search.trials``, or, where an epoch budget (``search.budget_epochs``) could carry fewer
    trials of the fewest epochs, that many. ``search.trials`` is then a cap the budget ends the
    search before, and planning for it would leave most of the trials the budget buys random
    (Optuna counts finished trials, the sub-models a trial adds to the study among them, so a
    trial with a pruning grid can end the start-up sooner)."""
    budget = spec.search.budget_epochs
    if budget is None:
        return spec.search.trials
    return max(1, min(spec.search.trials, budget // max(1, spec.fewest_epochs())))


def sampler_for(spec: Spec, seed: int) -> optuna.samplers.BaseSampler:
    """The search's sampler (``search.sampler``), planned for ``planned_trials(spec)``."""
    return make_sampler(spec.search.sampler, seed, planned_trials(spec))


def journal_storage(path: Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _all_finite(values: list) -> bool:
    """Every value a finite number (a missing metric is None, a diverged one NaN)."""
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


class ConstrainedOptunaSearch(OptunaSearch):
    def __init__(self, *, accuracy_target: float, storage_path: Path, budget: EpochBudget | None = None,
                 **kwargs: Any) -> None:
        self.accuracy_target = accuracy_target
        self.storage_path = Path(storage_path)
        self.budget = budget  # fed the same reports as the scheduler's: no trial starts once spent
        super().__init__(storage=journal_storage(self.storage_path), **kwargs)

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what the dashboard shows
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names(list(self._metric) if isinstance(self._metric, list) else [self._metric])

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.budget is not None and not self.budget.room_for_another:
            # a running trial that ends early (stopped, or fewer epochs than it might have
            # taken) may leave room: ask again then; with none running, none ever will
            return None if self.budget.running else Searcher.FINISHED
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        if self.budget is not None and isinstance(config, dict):
            self.budget.started(trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._count_epochs(trial_id, result)
        super().on_trial_result(trial_id, result)

    def _count_epochs(self, trial_id: str, result: dict | None) -> None:
        if self.budget is not None and result and EPOCHS in result:
            self.budget.on_report(trial_id, int(result[EPOCHS]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # a result the scheduler stopped the trial at reaches the searcher here only
        self._count_epochs(trial_id, result)
        if self.budget is not None:
            self.budget.ended(trial_id, finished=bool(result) and not error and ran_to_its_end(result))
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        tell_outcome(self._ot_study, self._ot_trials[trial_id], result, error=error,
                     metrics=list(self.metric), accuracy_target=self.accuracy_target)
        self._completed_trials.add(trial_id)

    # Tune pickles the searcher with the tuner (tuner.pkl, never read back: a resumed search
    # builds a new searcher on the journal). The journal storage holds an open file handle and a
    # lock: pickle the path, reopen on load.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_storage"] = None
        study = state.get("_ot_study")
        if study is not None:
            state["_ot_study"] = None
            state["_study_name"] = study.study_name
        state["_ot_trial_numbers"] = {tid: t.number for tid, t in self._ot_trials.items()}
        state["_ot_trials"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        numbers = state.pop("_ot_trial_numbers", {})
        self.__dict__.update(state)
        self._storage = journal_storage(self.storage_path)
        if self._study_name is not None and self._metric is not None:
            self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage,
                                               sampler=self._sampler)
            by_number = {t.number: t for t in self._ot_study.get_trials(deepcopy=False)}
            self._ot_trials = {
                tid: optuna.trial.Trial(self._ot_study, by_number[n]._trial_id)
                for tid, n in numbers.items() if n in by_number
            }

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: every trial is in the journal, which is what a resume reads."""

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("a search resumes from its Optuna journal, never from a pickled searcher")


def tell_outcome(study: optuna.Study, trial: optuna.trial.Trial, result: dict | None, *, error: bool,
                 metrics: list[str], accuracy_target: float) -> None:
    """Tell ``study`` how a Ray trial ended, from its last result: PRUNED when early stopping
    ended it (the last result is not a final one), FAIL when it errored, failed by itself or
    lacks a finite objective, else COMPLETE with its values and the accuracy constraint."""
    if result and not error and FAILED not in result and not is_finished(result):
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    # the sub-model of the sampled hyper-parameters (``sampled/...``, see trainable.py): a
    # NetTailor trial may choose another pruning, which the sampler learns as a trial of its own
    values = [result.get(f"{SAMPLED}/{m}", result.get(m)) if result else None for m in metrics]
    accuracy = result.get(f"{SAMPLED}/val_accuracy", result.get("val_accuracy")) if result else None
    if error or FAILED in (result or {}) or not _all_finite([*values, accuracy]):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    set_constraint(trial, accuracy_target - accuracy)
    study.tell(trial, values, state=optuna.trial.TrialState.COMPLETE)


def add_submodel_trials(
    study: optuna.Study, *, space: dict, config: dict, records: list[dict], metrics: list[str],
    accuracy_target: float, trial_id: str,
) -> int:
    """Tell the study every sub-model of a finished trial that stands for other sampled values
    than the trial's own (a NetTailor pruning at another theta or K), as a finished trial with its
    own parameters, objective values and constraint. The trial's own point is told by the
    searcher. Sub-models outside the space's ranges, or with a missing value, are left out.
    Returns how many were added."""
    from raytailor.search.space import distribution, sampled_params

    base = sampled_params(space, config)
    distributions = {name: distribution(space[name]) for name in base}
    added = 0
    for record in records:
        own = {k: v for k, v in (record.get("own_hyperparameters") or {}).items() if k in base}
        params = {**base, **own}
        values = [record.get(m) for m in metrics]
        if params == base or not _all_finite([*values, record.get("val_accuracy")]):
            continue
        if not all(distributions[k]._contains(distributions[k].to_internal_repr(v)) for k, v in own.items()):
            continue
        violation = accuracy_target - record["val_accuracy"]
        frozen = optuna.trial.create_trial(
            params=params, distributions=distributions, values=values,
            user_attrs={"ray_trial_id": trial_id, "submodel": record["submodel"]},
            system_attrs={DASHBOARD_CONSTRAINTS: [violation]},
        )
        frozen.set_constraint(CONSTRAINT, violation)
        study.add_trial(frozen)
        added += 1
    return added
