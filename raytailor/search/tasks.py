"""Several tasks in one Tune experiment: each trial belongs to one task (``config["task"]``).

A multi-task search runs every task's trials side by side on one Ray instance, sharing one
object-store copy of the backbone, yet each task keeps what a single-task search has: its own
Optuna study (sampler, accuracy constraint, journal in its folder), its own early-stopping rules
(its target, its record) and its own tables. These three routers give each trial to its task's
searcher, scheduler and callbacks; nothing of a task sees another task's trials.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from raytailor.search.location import TASK


class TaskSearcher(Searcher):
    """Asks each task's searcher in turn for the next trial's values (the task with the fewest
    trials so far first, up to ``max_trials[task]`` trials each, until its searcher says it is
    finished: its compute budget is spent) and names the task in the config. A task whose
    searcher has nothing now (its budget has room only if a running trial ends early) leaves
    its turn to the next."""

    def __init__(self, searchers: dict[str, Searcher], max_trials: dict[str, int]) -> None:
        first = next(iter(searchers.values()))
        super().__init__(metric=first.metric, mode=first.mode)
        self.searchers, self.max_trials = searchers, dict(max_trials)
        self.asked = {task: 0 for task in searchers}
        self.task_of: dict[str, str] = {}  # Ray trial id -> task

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return all(s.set_search_properties(metric, mode, config, **spec) for s in self.searchers.values())

    def suggest(self, trial_id: str) -> dict | str | None:
        open_tasks = [task for task in self.searchers if self.asked[task] < self.max_trials.get(task, 0)]
        if not open_tasks:
            return Searcher.FINISHED
        for task in sorted(open_tasks, key=lambda t: self.asked[t]):  # ties: the spec's order
            config = self.searchers[task].suggest(trial_id)
            if config == Searcher.FINISHED:  # that task's compute budget is spent
                self.max_trials[task] = self.asked[task]
            elif isinstance(config, dict):
                self.asked[task] += 1
                self.task_of[trial_id] = task
                return {**config, TASK: task}
        still_open = any(self.asked[task] < self.max_trials.get(task, 0) for task in self.searchers)
        return None if still_open else Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.task_of:
            self.searchers[self.task_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.task_of:
            self.searchers[self.task_of[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: each task's trials are in its journal, which is what a resume reads."""

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("a search resumes from its Optuna journals, never from a pickled searcher")


class TaskScheduler(FIFOScheduler):
    """Each task's trials go to its own scheduler's decisions (early stopping judged against that
    task's target and trials only); trials run first-in first-out across tasks."""

    def __init__(self, schedulers: dict[str, TrialScheduler]) -> None:
        super().__init__()
        self.schedulers = schedulers
        self._supports_buffered_results = all(s.supports_buffered_results for s in schedulers.values())

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def _of(self, trial: Any) -> TrialScheduler:
        return self.schedulers[trial.config[TASK]]

    def debug_string(self) -> str:
        return "; ".join(f"{task}: {s.debug_string()}" for task, s in self.schedulers.items())


class ForTask(tune.Callback):
    """``callback``'s trial-end hooks, for the trials of ``task`` only."""

    def __init__(self, task: str, callback: tune.Callback) -> None:
        self.task, self.callback = task, callback

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.config.get(TASK) == self.task:
            self.callback.on_trial_complete(iteration, trials, trial, **info)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.config.get(TASK) == self.task:
            self.callback.on_trial_error(iteration, trials, trial, **info)
