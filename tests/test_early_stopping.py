"""Early stopping's decisions on scripted report sequences, the Tune scheduler around them, and
what the searcher and the tables make of a stopped trial. No Ray instance is started."""

import pickle
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from raytailor.search.early_stopping import EarlyStopping, stopped_trials
from raytailor.search.results import trial_row
from raytailor.search.scheduler import ConstrainedEarlyStopping
from raytailor.search.searcher import ConstrainedOptunaSearch, make_sampler
from raytailor.search.space import DefineByRun
from raytailor.spec import ParamSpec, parse_spec

TARGET = 90.0


def _rules(tmp_path=None, **settings) -> EarlyStopping:
    settings = {"reduction_factor": 3, "grace_epochs": 1, "min_finished": 2, "slack": 1.0} | settings
    record = None if tmp_path is None else tmp_path / "early_stopping.json"
    return EarlyStopping(costs=["macs"], accuracy_target=TARGET, record=record, **settings)


def _estimate(accuracy: float, macs: float) -> dict[str, float]:
    return {"val_accuracy": accuracy, "macs": macs, "params": macs / 10, "task_params": macs / 100}


def test_rungs_grow_by_the_reduction_factor():
    rules = _rules(grace_epochs=2, reduction_factor=3)
    assert [rules.rung_at(e) for e in (1, 2, 5, 6, 17, 18, 60)] == [None, 2, 2, 6, 6, 18, 54]
    assert [_rules(grace_epochs=1, reduction_factor=1.5).rung_at(e) for e in (1, 2, 3, 4)] == [1, 2, 3, 4]


def test_a_dominated_trial_is_stopped_and_one_on_the_front_is_kept():
    rules = _rules()
    assert rules.on_estimate("best", 1, _estimate(95.0, 1000)) is None  # the first at a rung always goes on
    stop = rules.on_estimate("dominated", 1, _estimate(85.0, 2000))     # worse in both: stopped
    assert stop is not None and stop.rung == 1 and "dominated by 1" in stop.reason and "best" in stop.reason
    # much less accurate but leaner than anything else: on the rung's front, so it goes on (no
    # trial has finished yet, so nothing says it cannot become feasible)
    assert rules.on_estimate("lean", 1, _estimate(60.0, 100)) is None
    assert set(rules.stopped) == {"dominated"}
    # between estimates nothing is judged; the next rung is epoch 3
    assert rules.on_estimate("lean", 2, _estimate(10.0, 100)) is None


def test_a_dominated_trial_in_the_best_fraction_is_kept():
    rules = _rules(reduction_factor=3)
    assert rules.on_estimate("best", 1, _estimate(95, 100)) is None
    # each worse than everything before it: behind the best third of the rung, stopped (stopped
    # trials' estimates stay in the rung, as in ASHA)
    for i, (accuracy, macs) in enumerate([(50, 1000), (49, 1100), (48, 1200)]):
        assert rules.on_estimate(f"poor{i}", 1, _estimate(accuracy, macs)) is not None
    # dominated by "best" only: second of five, inside the best third (2 of 5), so it goes on
    assert rules.on_estimate("second", 1, _estimate(90, 150)) is None


def test_a_trial_is_dominated_only_by_more_than_the_validation_set_can_tell_apart():
    """On 143 validation images two accuracies near 94 % are one standard error apart at 2.8
    points: 2 points better and cheaper does not stop a trial, 15 points does; with
    dominance_se 0 (or no image count) any difference does."""
    rules = _rules(val_images=143, dominance_se=1.0)
    assert rules.on_estimate("best", 1, _estimate(95.0, 1000)) is None
    assert rules.on_estimate("close", 1, _estimate(93.0, 2000)) is None  # within the noise
    stop = rules.on_estimate("far", 1, _estimate(80.0, 2000))
    assert stop is not None and "dominated (more than 1 standard errors on 143 validation images) by" in stop.reason
    assert stop.reason.endswith("(e.g. best) and not in their best 1/3")
    for exact in (_rules(val_images=143, dominance_se=0.0), _rules()):
        assert exact.on_estimate("best", 1, _estimate(95.0, 1000)) is None
        assert exact.on_estimate("close", 1, _estimate(93.0, 2000)) is not None
    # a gap of 2 points is beyond one standard error on 2,000 images (0.75 points)
    many = _rules(val_images=2000, dominance_se=1.0)
    assert many.on_estimate("best", 1, _estimate(95.0, 1000)) is None
    assert many.on_estimate("close", 1, _estimate(93.0, 2000)) is not None


def test_a_trial_far_below_the_target_is_stopped_once_finished_trials_set_the_margin(tmp_path):
    rules = _rules(reduction_factor=1.01)  # the front rule keeps every trial: this is the target rule
    rules.on_estimate("a", 1, _estimate(85.0, 1000))
    rules.on_estimate("b", 1, _estimate(84.0, 900))
    rules.on_finished("a", 88.0)                       # gained 3 points after epoch 1
    # one finished trial is not enough (min_finished 2): the weak trial goes on
    assert rules.on_estimate("weak", 1, _estimate(70.0, 1100)) is None
    rules.on_finished("b", 86.0)                       # gained 2: the margin is 3 + 1 slack
    assert rules.margin(1) == pytest.approx(4.0)
    stop = rules.on_estimate("weaker", 1, _estimate(85.5, 1050))  # 85.5 + 4 < 90
    assert stop is not None and "below the target 90.00%" in stop.reason
    assert rules.on_estimate("close", 1, _estimate(86.5, 1200)) is None  # 86.5 + 4 >= 90: may make it


def test_a_lean_trial_is_judged_only_by_what_finished_trials_as_lean_gained():
    """A leaner trial's estimate starts lower and gains more: costlier trials' gains do not
    stop it."""
    rules = _rules(min_finished=1, slack=0.0, reduction_factor=1.01)  # the target rule alone
    rules.on_estimate("costly", 1, _estimate(85.0, 1000))
    rules.on_finished("costly", 88.0)                  # gained 3
    # far below, but leaner than every finished trial: nothing says what it may gain
    assert rules.on_estimate("lean", 1, _estimate(60.0, 100)) is None
    assert rules.margin(1, rules.rungs[1]["lean"]) is None and rules.margin(1) == pytest.approx(3.0)
    stop = rules.on_estimate("costlier", 1, _estimate(80.0, 2000))  # judged by "costly": 80 + 3 < 90
    assert stop is not None and "below the target" in stop.reason
    stop = rules.on_estimate("as-costly", 1, _estimate(80.0, 1000))  # as lean counts: 80 + 3 < 90
    assert stop is not None and "below the target" in stop.reason
    rules.on_finished("lean", 92.0)                    # gained 32
    assert rules.on_estimate("middle", 1, _estimate(65.0, 500)) is None  # as lean: "lean" only, 65 + 32
    stop = rules.on_estimate("costliest", 1, _estimate(50.0, 3000))     # both count: 50 + 32 < 90
    assert stop is not None and "below the target" in stop.reason


def test_losses_of_finished_trials_never_stop_a_trial_that_meets_the_target():
    """Pruning usually costs a student some accuracy, so gains may be negative; a trial at the
    target is still not "too far below" it."""
    rules = _rules(min_finished=1, slack=0.0, reduction_factor=1.01)  # the target rule alone
    rules.on_estimate("a", 1, _estimate(99.0, 1000))
    rules.on_finished("a", 95.0)  # lost 4 points after epoch 1
    assert rules.margin(1) == 0.0
    assert rules.on_estimate("at-target", 1, _estimate(90.0, 2000)) is None
    assert rules.on_estimate("below", 1, _estimate(89.9, 3000)) is not None


def test_a_restarted_trial_is_judged_again_and_decisions_survive_a_new_process(tmp_path):
    rules = _rules(tmp_path)
    rules.on_estimate("a", 1, _estimate(95.0, 1000))
    assert rules.on_estimate("b", 1, _estimate(85.0, 2000)) is not None
    rules.on_estimate("c", 1, _estimate(94.0, 900))
    rules.on_estimate("c", 3, _estimate(95.0, 900))
    rules.on_finished("a", 96.0)
    again = _rules(tmp_path)  # a resumed search reads the record file
    assert set(again.stopped) == {"b"} and again.finished == {"a": 96.0}
    assert again.rungs[1].keys() == {"a", "b", "c"} and again.rungs[3].keys() == {"c"}
    assert stopped_trials(tmp_path / "early_stopping.json")["b"].epochs == 1
    # "c" re-runs from scratch after the resume: it is judged at its rungs again, its own earlier
    # record replaced (not compared against), the others' records kept
    assert again.on_estimate("c", 1, _estimate(80.0, 2000)) is not None
    assert again.rungs[1]["c"].accuracy == 80.0 and "dominated by 2 of the 2" in again.stopped["c"].reason


def test_a_trial_continued_from_its_checkpoint_is_not_judged_again_at_rungs_it_had_passed(tmp_path):
    """resume runs an interrupted trial again under a new id from the state it kept after 2
    epochs: its estimates up to there stay (under the old id), later ones are forgotten, and the
    new trial is judged from the next rung on."""
    rules = _rules(tmp_path, grace_epochs=1, reduction_factor=2)  # rungs 1, 2, 4
    rules.on_estimate("a", 1, _estimate(95.0, 1000))
    rules.on_estimate("old", 1, _estimate(80.0, 500))   # on the front (leaner): goes on
    rules.on_estimate("old", 2, _estimate(81.0, 500))
    rules.on_estimate("old", 4, _estimate(82.0, 500))
    rules.forget({"old": 2})
    again = _rules(tmp_path, grace_epochs=1, reduction_factor=2)
    assert again.rungs[1].keys() == {"a", "old"} and "old" in again.rungs[2] and "old" not in again.rungs[4]
    # a dominated estimate at epoch 3 would be judged at rung 2 by a new trial; not by one that
    # continued from epoch 2, which had passed rung 2
    assert again.on_estimate("new", 3, _estimate(10.0, 5000), restored=2) is None
    assert "new" not in again.rungs.get(2, {})
    assert again.on_estimate("fresh", 3, _estimate(10.0, 5000)) is not None


def test_scheduler_stops_on_estimates_only_and_learns_from_final_reports(tmp_path):
    scheduler = ConstrainedEarlyStopping(record=tmp_path / "early_stopping.json", costs=["macs"],
                                         accuracy_target=TARGET, reduction_factor=3, grace_epochs=1,
                                         min_finished=1, slack=0.0)

    class Trial:
        def __init__(self, trial_id):
            self.trial_id = trial_id

    def estimate_report(epochs, accuracy, macs):
        return {"epochs": epochs, "student/loss": 1.0} | {f"estimate/{k}": v for k, v in _estimate(accuracy, macs).items()}

    first, second, third = Trial("first"), Trial("second"), Trial("third")
    assert scheduler.on_trial_result(None, first, {"epochs": 1, "factors_1/loss": 0.3}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, first, estimate_report(1, 92.0, 1000)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, second, estimate_report(1, 91.0, 2000)) == TrialScheduler.STOP
    scheduler.on_trial_complete(None, second, estimate_report(1, 91.0, 2000))  # Tune calls it for a stopped trial
    scheduler.on_trial_complete(None, first, {"finished": True, "val_accuracy": 93.0, "best_val_accuracy": 93.0,
                                              "epochs": 20})
    assert scheduler.rules.finished == {"first": 93.0} and set(scheduler.rules.stopped) == {"second"}
    # pickled with the experiment: the decisions come back from the record file, not the pickle
    clone = pickle.loads(pickle.dumps(scheduler))
    assert clone._rules is None and set(clone.rules.stopped) == {"second"}
    # margin learned from "first" (gained 1 point), as lean as "third": 88 + 1 < 90
    assert clone.on_trial_result(None, third, estimate_report(1, 88.0, 1500)) == TrialScheduler.STOP
    assert "below the target" in clone.rules.stopped["third"].reason


def test_a_trial_judged_to_stop_with_candidates_ready_ends_with_them_unless_it_trains_on(tmp_path):
    """Stopping a trial that has candidates ready (a pruning fine-tuned, a chain step done) would
    lose them: the scheduler posts it wound up on the bulletin instead and lets it train the epoch
    it reports and one more while it ends with them; one still training after that is stopped.
    The tables give the trial that ended with them early stopping's reason."""

    class Bulletin:
        def __init__(self):
            self.wound_up = []

        def wind_up(self, trial):
            self.wound_up.append(trial)

    bulletin = Bulletin()
    record = tmp_path / "early_stopping.json"
    scheduler = ConstrainedEarlyStopping(record=record, bulletin=bulletin, costs=["macs"], accuracy_target=TARGET,
                                         reduction_factor=3, grace_epochs=1, min_finished=1, slack=0.0)

    def report(epochs, accuracy, macs, **more):
        return {"epochs": epochs} | {f"estimate/{k}": v for k, v in _estimate(accuracy, macs).items()} | more

    leader, ready, nothing, deaf = (Trial(name) for name in ("leader", "ready", "nothing", "deaf"))
    assert scheduler.on_trial_result(None, leader, report(1, 95.0, 1000)) == TrialScheduler.CONTINUE
    # dominated at rung 1 (not in the best 1/3 of 2 once it is ranked below the leader)
    assert scheduler.on_trial_result(None, ready, report(1, 80.0, 2000, candidates_ready=1)) == TrialScheduler.CONTINUE
    assert bulletin.wound_up == ["ready"]
    assert scheduler.on_trial_result(None, nothing, report(1, 80.0, 2000)) == TrialScheduler.STOP
    assert scheduler.on_trial_result(None, deaf, report(1, 80.0, 3000, candidates_ready=2)) == TrialScheduler.CONTINUE
    assert bulletin.wound_up == ["ready", "deaf"]
    assert set(stopped_trials(record)) == {"nothing"} and set(stopped_trials(record, kind="wound_up")) == {"ready", "deaf"}
    # "ready" ends with its candidates after one more epoch; "deaf" trains on and is stopped
    assert scheduler.on_trial_result(None, ready, report(2, 81.0, 2000, candidates_ready=1)) == TrialScheduler.CONTINUE
    final = {"epochs": 2, "finished": True, "val_accuracy": 85.0, "best_val_accuracy": 85.0, "cut_short": True}
    assert scheduler.on_trial_result(None, ready, final) == TrialScheduler.CONTINUE
    scheduler.on_trial_complete(None, ready, final)
    assert scheduler.on_trial_result(None, deaf, report(2, 80.0, 3000, candidates_ready=2)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, deaf, report(3, 80.0, 3000, candidates_ready=2)) == TrialScheduler.STOP
    assert set(stopped_trials(record)) == {"nothing", "deaf"} and set(stopped_trials(record, kind="wound_up")) == {"ready"}
    assert stopped_trials(record)["deaf"].epochs == 3  # where it was stopped, and why
    assert stopped_trials(record)["deaf"].reason.startswith("stopped at epoch 3: judged at epoch 1 ")
    # cut short, it did not run to its end: what it gained is no margin for the others
    assert scheduler.rules.finished == {}
    # judged at the epoch that completed its last model, it ends as it would have: finished
    last = Trial("last")
    assert scheduler.on_trial_result(None, last, report(1, 70.0, 4000, candidates_ready=1)) == TrialScheduler.CONTINUE
    assert "last" in stopped_trials(record, kind="wound_up")
    whole = {"epochs": 1, "finished": True, "val_accuracy": 71.0, "best_val_accuracy": 71.0}
    scheduler.on_trial_complete(None, last, whole)
    assert scheduler.rules.finished == {"last": 71.0} and "last" not in stopped_trials(record, kind="wound_up")
    # without a bulletin to tell it, a trial with candidates ready is stopped like any other
    alone = ConstrainedEarlyStopping(record=tmp_path / "alone.json", costs=["macs"], accuracy_target=TARGET,
                                     reduction_factor=3, grace_epochs=1, min_finished=1, slack=0.0)
    assert alone.on_trial_result(None, leader, report(1, 95.0, 1000)) == TrialScheduler.CONTINUE
    assert alone.on_trial_result(None, ready, report(1, 80.0, 2000, candidates_ready=1)) == TrialScheduler.STOP

    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "digits"}, "space": {"theta": {"low": 0.01, "high": 0.2}}})
    wound = stopped_trials(record, kind="wound_up")["ready"]
    row = trial_row("ready", {"theta": 0.1}, final, None, spec, stop=wound)
    assert row["status"] == "TERMINATED" and row["val_accuracy"] == 85.0
    assert row["reason"].startswith("ended with the sub-models it had ready at epoch 1, early stopping's call: ")
    assert "dominated" in row["reason"] and "budget" not in row["reason"]


class Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def test_a_stopped_trial_is_pruned_in_the_journal_and_stopped_in_the_tables(tmp_path):
    space = {"theta": ParamSpec(low=0.01, high=0.2)}
    searcher = ConstrainedOptunaSearch(
        space=DefineByRun(space, {}), metric=["val_accuracy", "macs"], mode=["max", "min"],
        sampler=make_sampler("tpe", 0), study_name="unit", accuracy_target=TARGET,
        storage_path=tmp_path / "optuna.journal")
    for trial_id in ("finished", "stopped"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("finished", {"finished": True, "val_accuracy": 92.0, "macs": 1e6, "epochs": 24})
    last = {"epochs": 3, "student/val_accuracy": 70.0, "estimate/val_accuracy": 70.0, "estimate/macs": 2e6,
            "done": True}  # Tune sets done on the result it stopped a trial at
    searcher.on_trial_complete("stopped", last)
    study = optuna.load_study(study_name="unit", storage=searcher._storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]

    rules = _rules()
    rules.on_estimate("finished", 3, _estimate(93.0, 1e6))
    stop = rules.on_estimate("stopped", 3, _estimate(70.0, 2e6))
    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "digits"}, "space": {"theta": {"low": 0.01, "high": 0.2}}})
    row = trial_row("stopped", {"theta": 0.1}, last, None, spec, stop=stop)
    assert row["status"] == "STOPPED" and row["reason"] == stop.reason and row["trained_epochs"] == 3
    assert row["val_accuracy"] == 70.0 and row["macs"] == 2e6 and row["test_accuracy"] is None
    assert not row["feasible"] and not row["chosen"]


def test_tensorboard_says_which_call_cut_a_trial_short(tmp_path):
    """A trial that ended with its ready models: ``early_stopping/cut_short`` with early
    stopping's reason where the rules wound it up, ``budget/cut_short`` where the budget did."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raytailor.search.callbacks import StoppedToTensorBoard

    rules = _rules(tmp_path, min_finished=1)
    rules.on_estimate("leader", 1, _estimate(95.0, 1000))
    rules.on_estimate("judged", 1, _estimate(80.0, 2000))
    rules.wind_up("judged")

    class Ended:
        def __init__(self, trial_id):
            self.trial_id, self.local_path = trial_id, str(tmp_path / trial_id)
            self.last_result = {"cut_short": True, "epochs": 2, "finished": True}

    callback = StoppedToTensorBoard(folder=tmp_path)
    tags = {}
    for trial_id in ("judged", "budgeted"):
        callback.on_trial_complete(0, [], Ended(trial_id))
        events = EventAccumulator(str(tmp_path / trial_id))
        events.Reload()
        tags[trial_id] = events.Tags()["tensors"]
    assert [t.split("/")[0] for t in tags["judged"]] == ["early_stopping"]
    assert [t.split("/")[0] for t in tags["budgeted"]] == ["budget"]
    assert not stopped_trials(tmp_path / "early_stopping.json")  # judged was wound up, not stopped


def test_a_resume_marks_what_the_interruption_kept_from_tensorboard_once(tmp_path):
    """The driver interrupted between a trial's end and Tune's callbacks: a trial the rules
    stopped, one they wound up that had not yet ended with its models (kept as stopped), and
    one cut short by the spent budget whose final report only its checkpoint holds. The
    resume's completion of their runs writes where and why, as the callback would have; a run
    that has its mark gets no second one."""
    import pyarrow.fs
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raytailor.search.runner import SearchTask, _complete_tensorboard
    from raytailor.search.trial_folders import TrialRecord
    from raytailor.spec import load_spec

    rules = _rules(tmp_path, min_finished=1)
    rules.on_estimate("leader", 2, _estimate(95.0, 1000))
    rules.on_finished("leader", 96.0)
    assert rules.on_estimate("judged", 2, _estimate(30.0, 2000)) is not None
    assert rules.on_estimate("wound", 2, _estimate(31.0, 2000)) is not None
    rules.wind_up("wound")
    config = {"gamma1": 0.3, "gamma2": 3.0, "skips": 2, "theta": 0.05, "blocks_removed": 2}
    per_epoch = {"epochs": 2, "estimate/val_accuracy": 30.0, "estimate/macs": 2000.0}
    ended, kept = {}, {}
    for trial in ("judged", "wound", "cut"):
        folder = tmp_path / "trials" / trial
        folder.mkdir(parents=True)
        ended[trial] = TrialRecord(trial, pyarrow.fs.LocalFileSystem(), str(folder), config, [per_epoch])
        kept[trial] = per_epoch
    kept["cut"] = {"epochs": 3, "val_accuracy": 90.0, "cut_short": True, "finished": True}  # from its checkpoint
    task = SearchTask(None, tmp_path, load_spec(Path(__file__).resolve().parent.parent / "search_spaces" / "demo.yaml"),
                      study_name="unit")
    for _ in range(2):  # resumed twice: one mark each
        _complete_tensorboard(task, ended, kept, {})
    for trial, kind in (("judged", "early_stopping"), ("wound", "early_stopping"), ("cut", "budget")):
        assert len(list((tmp_path / "trials" / trial).glob(f"events.out.tfevents.*.{kind}"))) == 1, trial
    for trial in ("judged", "wound"):
        events = EventAccumulator(str(tmp_path / "trials" / trial))
        events.Reload()
        assert [e.value for e in events.Scalars("early_stopping/stopped_at_epoch")] == [2.0]
    events = EventAccumulator(str(tmp_path / "trials" / "cut"))
    events.Reload()
    assert events.Tags()["tensors"] == ["budget/cut_short/text_summary"]


def test_a_wound_up_trial_the_interruption_caught_is_kept_as_stopped_by_a_resume(tmp_path):
    """Judged to stop with models ready, then interrupted before it ended with them: run again,
    it would continue past the rung that judged it, so a resume keeps it as a stopped trial
    (the decision kept, as for every stopped trial)."""
    import pyarrow.fs

    from raytailor.search.results import rows_from_trials, stopped_in, wound_up_in
    from raytailor.search.runner import _ended
    from raytailor.search.trial_folders import TrialRecord

    rules = _rules(tmp_path, min_finished=1)
    rules.on_estimate("leader", 1, _estimate(95.0, 1000))
    rules.on_estimate("caught", 1, _estimate(80.0, 2000))
    rules.wind_up("caught")
    reports = [{"epochs": 1, "estimate/val_accuracy": 80.0, "estimate/macs": 2000.0, "candidates_ready": 1,
                "trial_id": "caught"}]
    record = TrialRecord("caught", pyarrow.fs.LocalFileSystem(), str(tmp_path), {"theta": 0.1}, reports=reports)
    assert not stopped_in(tmp_path) and _ended(record, stopped_in(tmp_path) | wound_up_in(tmp_path), set(), 2)
    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "digits"}, "space": {"theta": {"low": 0.01, "high": 0.2}}})
    (row,), _ = rows_from_trials([record], spec, TARGET, stopped=stopped_in(tmp_path), wound_up=wound_up_in(tmp_path))
    assert row["status"] == "STOPPED" and row["reason"].startswith("stopped at epoch 1: ") and not row["feasible"]
