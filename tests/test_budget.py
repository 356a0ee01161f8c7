"""A search's compute budget (search.budget_epochs): scripted reports through the budget, the
scheduler and the searchers, no Ray instance."""

import json
import pickle
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from raytailor.errors import SpecError
from raytailor.search.budget import BUDGET_FILE, EpochBudget
from raytailor.search.results import stopped_in
from raytailor.search.scheduler import ConstrainedEarlyStopping
from raytailor.search.searcher import ConstrainedOptunaSearch, make_sampler
from raytailor.search.space import DefineByRun
from raytailor.search.tasks import TaskSearcher
from raytailor.spec import ParamSpec, load_spec

DEMO = Path(__file__).resolve().parent.parent / "search_spaces" / "demo.yaml"


class Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def epoch(n, **more):
    return {"epochs": n, "student/loss": 1.0, **more}


def test_the_epoch_that_crosses_the_budget_goes_on_and_the_next_one_stops(tmp_path):
    budget = EpochBudget(10, spent_before=3, record=tmp_path / BUDGET_FILE)  # 7 epochs left
    for n in range(1, 5):
        assert budget.on_report("a", n) is None
    for n in range(1, 4):  # 3 + 4 + 3 = 10 after b's third epoch: spent, but b trained it before
        assert budget.on_report("b", n) is None
    assert budget.exhausted and budget.spent == 10
    assert budget.on_report("b", 3) is None  # no new epoch (a sub-model measured, the final report)
    stop = budget.on_report("a", 5, estimate={"val_accuracy": 80.0, "macs": 1e6})
    assert stop is not None and stop.epochs == 5 and "budget of 10 training epochs" in stop.reason
    assert budget.spent == 11  # a's fifth epoch was trained: it counts
    # the record is what the tables read, and survives a new process
    assert set(stopped_in(tmp_path)) == {"a"} and stopped_in(tmp_path)["a"].estimate["macs"] == 1e6
    assert json.loads((tmp_path / BUDGET_FILE).read_text())["spent_epochs"] == 11
    assert set(EpochBudget(10, record=tmp_path / BUDGET_FILE).stopped) == {"a"}


def test_the_scheduler_stops_training_trials_once_the_budget_is_spent_never_a_final_report(tmp_path):
    scheduler = ConstrainedEarlyStopping(record=None, budget=EpochBudget(4, record=tmp_path / BUDGET_FILE))
    a, b = Trial("a"), Trial("b")
    assert scheduler.on_trial_result(None, a, epoch(1)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, a, {"factors_1/loss": 0.3}) == TrialScheduler.CONTINUE  # no epochs
    assert scheduler.on_trial_result(None, a, epoch(2)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, b, epoch(1)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, b, epoch(2)) == TrialScheduler.CONTINUE  # 4: spent now
    final = {"epochs": 2, "finished": True, "val_accuracy": 90.0, "best_val_accuracy": 90.0}
    assert scheduler.on_trial_result(None, a, final) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, b, epoch(3)) == TrialScheduler.STOP
    assert set(stopped_in(tmp_path)) == {"b"}
    assert scheduler.rules is None and scheduler.debug_string() == "Budget: 5 of 4 epochs spent."
    clone = pickle.loads(pickle.dumps(scheduler))  # Tune pickles it with the experiment
    assert clone.budget.spent == 5


def test_past_the_budget_a_trial_with_candidates_ready_ends_with_them_and_one_without_is_stopped(tmp_path):
    """Stopping a trial that has candidates ready would lose them: the scheduler posts the
    budget spent on the bulletin (once) and lets such a trial train the epoch it reports and one
    more while it ends with them; one still training after that (it never heard) is stopped,
    and so is a trial with nothing ready."""

    class Bulletin:
        posts = 0

        def spend(self):
            self.posts += 1

    bulletin = Bulletin()
    scheduler = ConstrainedEarlyStopping(record=None, budget=EpochBudget(4, record=tmp_path / BUDGET_FILE),
                                         bulletin=bulletin)
    a, b = Trial("a"), Trial("b")
    for trial, n in [(a, 1), (a, 2), (b, 1)]:
        assert scheduler.on_trial_result(None, trial, epoch(n)) == TrialScheduler.CONTINUE
    assert bulletin.posts == 0
    assert scheduler.on_trial_result(None, b, epoch(2)) == TrialScheduler.CONTINUE  # 4: spent now
    assert bulletin.posts == 1
    assert scheduler.on_trial_result(None, a, epoch(3, candidates_ready=1)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, a, epoch(4, candidates_ready=1)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, a, epoch(5, candidates_ready=1)) == TrialScheduler.STOP
    assert scheduler.on_trial_result(None, b, epoch(3)) == TrialScheduler.STOP
    assert bulletin.posts == 1 and set(stopped_in(tmp_path)) == {"a", "b"}
    assert pickle.loads(pickle.dumps(scheduler)).bulletin is None  # the actor's handle stays on the driver


def test_early_stopping_and_the_budget_both_stop_trials(tmp_path):
    scheduler = ConstrainedEarlyStopping(
        record=tmp_path / "early_stopping.json", budget=EpochBudget(3, record=tmp_path / BUDGET_FILE),
        costs=["macs"], accuracy_target=90.0, reduction_factor=3, grace_epochs=1, min_finished=1, slack=0.0)

    def estimate(n, accuracy, macs):
        return epoch(n, **{"estimate/val_accuracy": accuracy, "estimate/macs": macs, "estimate/params": 1.0,
                           "estimate/task_params": 1.0})

    assert scheduler.on_trial_result(None, Trial("a"), estimate(1, 92.0, 1000)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, Trial("b"), estimate(1, 91.0, 2000)) == TrialScheduler.STOP  # dominated
    assert scheduler.on_trial_result(None, Trial("a"), estimate(2, 93.0, 1000)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, Trial("a"), estimate(3, 93.0, 1000)) == TrialScheduler.STOP  # budget
    assert stopped_in(tmp_path).keys() == {"a", "b"}
    assert "budget" in stopped_in(tmp_path)["a"].reason and "dominated" in stopped_in(tmp_path)["b"].reason


def test_the_searcher_starts_no_trial_once_the_budget_is_spent(tmp_path):
    searcher = ConstrainedOptunaSearch(
        space=DefineByRun({"theta": ParamSpec(low=0.01, high=0.2)}, {}), metric=["val_accuracy", "macs"],
        mode=["max", "min"], sampler=make_sampler("random", 0), study_name="unit", accuracy_target=90.0,
        storage_path=tmp_path / "optuna.journal", budget=EpochBudget(3, spent_before=1))
    assert isinstance(searcher.suggest("a"), dict)
    searcher.on_trial_result("a", epoch(1))
    assert isinstance(searcher.suggest("b"), dict)  # 2 of 3 spent
    # b's first epoch reaches the searcher only with its end (Tune passes a result the
    # scheduler stopped a trial at to on_trial_complete, not on_trial_result); its last result
    # is not a final one: PRUNED, never left RUNNING
    searcher.on_trial_complete("b", epoch(1, done=True))
    study = optuna.load_study(study_name="unit", storage=searcher._storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.PRUNED]
    assert searcher.suggest("c") is None  # spent, but a runs on: Tune asks again when a ends
    searcher.on_trial_complete("a", epoch(1, done=True))
    assert searcher.suggest("d") == Searcher.FINISHED  # none running: nothing will ever fit


def test_no_trial_starts_that_the_budget_left_could_not_carry_to_its_end():
    budget = EpochBudget(30, trial_epochs=12)  # a trial spends at least 12 epochs
    assert budget.room_for_another
    budget.started("a")
    assert budget.room_for_another  # 12 owed to a + 12 <= 30
    budget.started("b")
    assert not budget.room_for_another  # 24 owed + 12 > 30
    for n in (1, 2):  # early stopping ends b at its second epoch: its room comes back
        budget.on_report("b", n)
    budget.ended("b")
    assert budget.room_for_another  # 2 spent + 12 owed to a + 12 = 26
    budget.started("c")
    for n in range(1, 17):  # a spends 16 (it fine-tuned a second pruning)
        budget.on_report("a", n)
    budget.ended("a")
    # 18 spent and 12 owed to c: 12 epochs are left, but a new trial could not finish in them
    assert not budget.room_for_another and not budget.exhausted
    assert EpochBudget(12, trial_epochs=12).room_for_another and not EpochBudget(11, trial_epochs=12).room_for_another
    unknown = EpochBudget(3)  # a method that does not say its fewest: room while any epoch is left
    unknown.started("a")
    assert unknown.room_for_another
    for n in (1, 2, 3):
        unknown.on_report("a", n)
    assert not unknown.room_for_another


def test_running_trials_are_held_back_the_median_of_the_finished_trials_never_less_than_the_fewest(tmp_path):
    budget = EpochBudget(44, trial_epochs=12)
    assert budget.expected_epochs == 12  # none finished yet: the method's fewest
    budget.started("a")
    for n in range(1, 17):  # a fine-tuned a second pruning: 16
        budget.on_report("a", n)
    budget.ended("a", finished=True)
    assert budget.expected_epochs == 16
    budget.started("b")
    budget.on_report("b", 1)
    budget.ended("b")  # stopped early: what it spent says nothing of a whole trial
    assert budget.expected_epochs == 16
    budget.started("c")
    budget.on_report("c", 1)
    # 18 spent, 15 held back for c (16 - 1): 33, and a new trial's fewest 12 would not fit in
    # 44 (holding back only the fewest, 18 + 11 + 12 = 41 would let one start)
    assert not budget.room_for_another
    budget.on_report("c", 2)
    budget.ended("c")  # stopped early too: nothing is held back for it any more
    assert budget.room_for_another  # 19 spent, none running
    # a new trial starts when its own fewest fit, though a trial is expected to spend more
    # (16 + 12 <= 30 < 16 + 16): until it runs it has cost nothing
    assert EpochBudget(30, spent_before=16, trial_epochs=12, finished_before=[16]).room_for_another
    assert not EpochBudget(27, spent_before=16, trial_epochs=12, finished_before=[16]).room_for_another
    # the median, with the fewest as its floor
    assert EpochBudget(100, trial_epochs=12, finished_before=[20, 12, 20]).expected_epochs == 20
    assert EpochBudget(100, trial_epochs=12, finished_before=[8, 8, 20]).expected_epochs == 12

    # the searcher learns from trials that ran to their end only
    searcher = ConstrainedOptunaSearch(
        space=DefineByRun({"theta": ParamSpec(low=0.01, high=0.2)}, {}), metric=["val_accuracy", "macs"],
        mode=["max", "min"], sampler=make_sampler("random", 0), study_name="unit", accuracy_target=90.0,
        storage_path=tmp_path / "optuna.journal", budget=EpochBudget(100, trial_epochs=2))
    for trial, epochs, final in (("a", 5, True), ("b", 9, False)):
        assert isinstance(searcher.suggest(trial), dict)
        searcher.on_trial_result(trial, epoch(epochs))
        last = {"epochs": epochs, "finished": True, "val_accuracy": 95.0, "macs": 1e6} if final else epoch(epochs)
        searcher.on_trial_complete(trial, last)
    assert searcher.budget.finished == [5] and searcher.budget.expected_epochs == 5
    assert EpochBudget(40, trial_epochs=12, finished_before=[16]).expected_epochs == 16  # a resume's kept trials


def test_a_resume_counts_every_kept_trials_epochs_and_learns_from_the_finished_ones():
    from raytailor.search.runner import budget_epochs_kept

    kept = [  # the kept trials' final metrics (results.final_metrics)
        {"epochs": 16, "finished": True, "val_accuracy": 95.0},
        epoch(2),  # early stopping ended it
        {"epochs": 3, "failed": "TailoringError: no path", "finished": False},
        {"epochs": 12, "val_accuracy": 91.0},  # a search from before `finished`
        {**epoch(14), "val_accuracy": 93.0, "finished": True},  # finished by its checkpoint: rebuilt
        {"epochs": 5, "finished": True, "val_accuracy": 90.0, "cut_short": True},  # ended with what it had
    ]
    assert budget_epochs_kept(kept) == (16 + 2 + 3 + 12 + 14 + 5, [16, 12, 14])


def test_the_fewest_epochs_of_a_trial_come_from_its_method_and_every_value_the_spec_allows(tmp_path):
    assert load_spec(DEMO).fewest_epochs() == 16 + 8  # student_epochs + finetune_epochs
    searched = tmp_path / "searched.yaml"  # student_epochs searched in 4-20 instead of fixed at 16
    searched.write_text(DEMO.read_text().replace("fixed: {student_epochs: 16, ", "fixed: {")
                        .replace("space:\n", "space:\n  student_epochs: {low: 4, high: 20, default: 16}\n"))
    assert load_spec(searched).fewest_epochs() == 4 + 8
    with pytest.raises(SpecError, match="budget_epochs is 11, less than the 12 training epochs a trial spends"):
        load_spec(searched, overrides=["search.budget_epochs=11"])
    transtailor = load_spec(DEMO.parent / "transtailor_demo.yaml")
    config = transtailor.method_config()
    assert transtailor.fewest_epochs() == config.classifier_epochs + config.full_finetune_epochs + config.factor_epochs


def test_a_task_whose_budget_is_spent_leaves_its_turns_to_the_others():
    class Scripted(Searcher):
        def __init__(self, finished_after):
            super().__init__(metric="m", mode="max")
            self.finished_after, self.asked = finished_after, 0

        def suggest(self, trial_id):
            if self.asked >= self.finished_after:
                return Searcher.FINISHED
            self.asked += 1
            return {"x": self.asked}

    router = TaskSearcher({"a": Scripted(1), "b": Scripted(10)}, max_trials={"a": 5, "b": 3})
    tasks = [router.suggest(str(i))["task"] for i in range(4)]
    assert tasks == ["a", "b", "b", "b"]  # a's budget was spent after one trial
    assert router.suggest("5") == Searcher.FINISHED


def test_a_task_waiting_for_room_in_its_budget_lets_the_others_start_trials():
    class Waiting(Searcher):
        def __init__(self):
            super().__init__(metric="m", mode="max")
            self.room = False

        def suggest(self, trial_id):
            return {"x": 1} if self.room else None

    a, b = Waiting(), Waiting()
    router = TaskSearcher({"a": a, "b": b}, max_trials={"a": 2, "b": 2})
    assert router.suggest("1") is None  # neither has room now: ask again later, not finished
    b.room = True
    assert router.suggest("2")["task"] == "b"  # a, asked first (fewest trials), waits
    a.room = True
    assert [router.suggest(str(i))["task"] for i in (3, 4, 5)] == ["a", "a", "b"]
    assert router.suggest("6") == Searcher.FINISHED


@pytest.mark.parametrize("value, message", [
    ("0", "search.budget_epochs must be >= 1"), ("4.5", "must be an integer"), ("lots", "must be an integer")])
def test_a_budget_is_a_whole_number_of_epochs(value, message):
    assert load_spec(DEMO, overrides=["search.budget_epochs=48"]).search.budget_epochs == 48
    with pytest.raises(SpecError, match=message):
        load_spec(DEMO, overrides=[f"search.budget_epochs={value}"])


def test_a_budgeted_search_plans_its_sampler_for_the_trials_its_budget_buys(tmp_path):
    """TPE's random start-up is a third of the trials the sampler plans for (2 to 10). With an
    epoch budget that is the trials the budget could carry at the fewest epochs a trial spends
    (a student and one fine-tune: 24 on the demo, 12 at 8 + 4), not ``search.trials``, a cap
    the budget ends the search before: planned for 16, a 46-epoch search's 3 or 4 trials of 8 + 4
    epochs would be random until 5 trials or sub-models had finished."""
    from raytailor.search.searcher import planned_trials, sampler_for

    assert planned_trials(load_spec(DEMO)) == 8
    short = ["student_epochs=8", "finetune_epochs=4"]
    budgeted = load_spec(DEMO, overrides=[*short, "search.trials=16", "search.budget_epochs=46"])
    assert planned_trials(budgeted) == 3
    assert planned_trials(load_spec(DEMO, overrides=["search.trials=16", "search.budget_epochs=46"])) == 1
    assert planned_trials(load_spec(DEMO, overrides=["search.trials=2", "search.budget_epochs=500"])) == 2
    assert sampler_for(budgeted, 0)._n_startup_trials == 2
    assert sampler_for(load_spec(DEMO, overrides=[*short, "search.trials=16"]), 0)._n_startup_trials == 5
    # and the search's own searcher is built so (runner: one per task)
    from raytailor.search.runner import _objective_metrics, _searcher, _tasks

    (task,) = _tasks(budgeted, tmp_path)
    assert _searcher(task, 90.0, *_objective_metrics(budgeted))._sampler._n_startup_trials == 2
