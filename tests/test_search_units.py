"""Search pieces without running Ray Tune: space, constrained searcher, rows."""

import math
import os
import pickle
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from raytailor.search.results import hyperparameter_types, trial_row
from raytailor.search.searcher import CONSTRAINT, ConstrainedOptunaSearch, make_sampler
from raytailor.search.space import DefineByRun, is_integer_range
from raytailor.spec import ParamSpec, parse_spec

SPACE = {
    "skips": ParamSpec(choices=[1, 2, 3], default=3),
    "blocks_removed": ParamSpec(low=0, high=5, default=2),
    "gamma1": ParamSpec(low=0.05, high=3.0, log=True, default=0.3, when={"skips": [2, 3]}),
    "theta": ParamSpec(low=0.01, high=0.2),
}


def test_define_by_run_types_and_conditions():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampler = DefineByRun(SPACE, {"theta": 0.05})
    seen_inactive = seen_active = False
    for _ in range(30):
        trial = study.ask()
        constants = sampler(trial)
        assert isinstance(trial.params["blocks_removed"], int)
        assert isinstance(trial.params["theta"], float)
        if trial.params["skips"] == 1:
            assert "gamma1" not in trial.params and constants == {"gamma1": 0.3}
            seen_inactive = True
        else:
            assert 0.05 <= trial.params["gamma1"] <= 3.0 and constants == {}
            seen_active = True
        study.tell(trial, 0.0)
    assert seen_inactive and seen_active
    assert is_integer_range(SPACE["blocks_removed"]) and not is_integer_range(SPACE["theta"])


def test_conditions_are_sampled_first_whatever_the_yaml_order():
    base = {"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"}, "data": {"dataset": "digits"}}
    spec = parse_spec({**base, "space": {"gamma1": {"low": 0.1, "high": 1.0, "when": {"skips": 2}},
                                         "skips": {"choices": [1, 2]}}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        trial = study.ask()
        DefineByRun(spec.space, {"gamma1": 0.3})(trial)
        assert ("gamma1" in trial.params) == (trial.params["skips"] == 2)
        study.tell(trial, 0.0)
    with pytest.raises(Exception, match="space.gamma1.when refers to 'theta'"):
        parse_spec({**base, "space": {"gamma1": {"low": 0.1, "high": 1.0, "when": {"theta": 2}}}})
    with pytest.raises(Exception, match="form a cycle"):
        parse_spec({**base, "space": {"gamma1": {"low": 0.1, "high": 1.0, "when": {"skips": 2}},
                                      "skips": {"choices": [1, 2], "when": {"gamma1": 0.5}}}})


def _searcher(tmp_path, target=80.0):
    return ConstrainedOptunaSearch(
        space=DefineByRun(SPACE, {"theta": 0.05}), metric=["val_accuracy", "macs"], mode=["max", "min"],
        sampler=make_sampler("tpe", 0), study_name="unit", accuracy_target=target,
        storage_path=tmp_path / "optuna.journal",
    )


def test_constraint_reaches_optuna_and_failures_are_told(tmp_path):
    searcher = _searcher(tmp_path)
    for trial_id in ("good", "below", "nan", "missing", "crashed"):
        assert searcher.suggest(trial_id) is not None
    searcher.on_trial_complete("good", {"val_accuracy": 90.0, "macs": 1e6})
    searcher.on_trial_complete("below", {"val_accuracy": 70.0, "macs": 1e5})
    searcher.on_trial_complete("nan", {"val_accuracy": math.nan, "macs": 1e5})
    searcher.on_trial_complete("missing", {"val_accuracy": 90.0})
    searcher.on_trial_complete("crashed", None, error=True)
    study = optuna.load_study(study_name="unit", storage=searcher._storage)
    by_number = {t.number: t for t in study.trials}
    good, below, nan, missing, crashed = (by_number[i] for i in range(5))
    assert good.state == below.state == optuna.trial.TrialState.COMPLETE
    assert good.constraints[CONSTRAINT] == pytest.approx(-10.0)  # feasible: <= 0
    assert below.constraints[CONSTRAINT] == pytest.approx(10.0)   # infeasible
    assert {nan.state, missing.state, crashed.state} == {optuna.trial.TrialState.FAIL}
    # the leaner but infeasible trial is not on Optuna's (constrained) front
    assert [t.number for t in study.best_trials] == [0]
    # what optuna-dashboard reads: the constraints list, objective names, the Ray trial id
    assert good.system_attrs["constraints"] == [pytest.approx(-10.0)]
    assert below.system_attrs["constraints"] == [pytest.approx(10.0)]
    assert study.metric_names == ["val_accuracy", "macs"]
    assert [t.user_attrs["ray_trial_id"] for t in study.trials] == ["good", "below", "nan", "missing", "crashed"]


def test_searcher_survives_pickling_mid_search(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", {"val_accuracy": 85.0, "macs": 2e6})
    clone = pickle.loads(pickle.dumps(searcher))
    clone.on_trial_complete("b", {"val_accuracy": 95.0, "macs": 1e6})  # the trial left running
    study = optuna.load_study(study_name="unit", storage=clone._storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert clone.suggest("c") is not None and len(study.trials) == 3


def test_rows_and_types():
    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "digits"},
                       "space": {k: v.__dict__ for k, v in SPACE.items()}})
    assert hyperparameter_types(spec) == {"skips": "int", "blocks_removed": "int", "gamma1": "float", "theta": "float"}
    done = trial_row("t1", {"skips": 2}, {"done": True, "val_accuracy": 90.0, "feasible": True, "macs": 5}, None, spec)
    assert done["status"] == "TERMINATED" and done["feasible"] and done["blocks_removed"] is None
    error = "Traceback (most recent call last):\n  ...\n\x1b[36mray.exceptions.RayTaskError\x1b[0m\n" \
            "raytailor.errors.TailoringError: the loss became nan at epoch 1; lower the learning rate\n"
    failed = trial_row("t2", {}, {"student/val_accuracy": 10.0, "epochs": 1}, error, spec)
    assert failed["status"] == "ERROR" and failed["val_accuracy"] is None and not failed["feasible"]
    assert failed["reason"] == "TailoringError: the loss became nan at epoch 1; lower the learning rate"
    # its last result is a per-epoch report: the trial never reached its end
    interrupted = trial_row("t3", {}, {"student/val_accuracy": 10.0, "epochs": 3}, None, spec)
    assert interrupted["status"] == "INTERRUPTED" and interrupted["trained_epochs"] == 3 and interrupted["reason"] is None


def _searched_params(tmp_path, sampler: str, seed: int, trials: int = 6) -> list[dict]:
    """``trials`` trials through the constrained searcher with ``sampler``, told a deterministic
    outcome of their parameters (every third one infeasible), as a search would."""
    searcher = ConstrainedOptunaSearch(
        space=DefineByRun(SPACE, {"theta": 0.05}), metric=["val_accuracy", "macs"], mode=["max", "min"],
        sampler=make_sampler(sampler, seed, trials), study_name=f"{sampler}-{seed}", accuracy_target=80.0,
        storage_path=tmp_path / f"{sampler}-{seed}.journal",
    )
    for i in range(trials):
        config = searcher.suggest(f"t{i}")
        params = searcher._ot_trials[f"t{i}"].params
        assert config is not None and set(params) >= {"skips", "blocks_removed", "theta"}
        accuracy = 70.0 if i % 3 == 2 else 90.0 - params["blocks_removed"] - 10 * params["theta"]
        searcher.on_trial_complete(f"t{i}", {"val_accuracy": accuracy, "macs": 1e6 * (6 - params["blocks_removed"])})
    study = optuna.load_study(study_name=f"{sampler}-{seed}", storage=searcher._storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * trials
    assert sum(t.constraints[CONSTRAINT] > 0 for t in study.trials) == trials // 3
    return [t.params for t in study.trials]


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random", "gp"])
def test_every_sampler_is_built_seeded_and_reproducible(tmp_path, name):
    """Past TPE's start-up trials (2 of 6 here), so the model-based proposals are compared too."""
    first = _searched_params(tmp_path / "a", name, seed=3)
    again = _searched_params(tmp_path / "b", name, seed=3)
    other = _searched_params(tmp_path / "c", name, seed=4)
    assert first == again
    assert first != other
    sampler = make_sampler(name, 3, 6)
    assert type(sampler).__name__ == {"tpe": "TPESampler", "nsga2": "NSGAIISampler", "random": "RandomSampler",
                                      "gp": "GPSampler"}[name]


def test_searcher_tells_the_sampled_sub_models_values(tmp_path):
    """A trial's last report holds its chosen sub-model; Optuna gets the one at the sampled values."""
    searcher = _searcher(tmp_path)
    for trial_id in ("chose-another", "own-pruning-empty"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("chose-another", {"val_accuracy": 85.0, "macs": 5e5,
                                                 "sampled/val_accuracy": 90.0, "sampled/macs": 1e6})
    searcher.on_trial_complete("own-pruning-empty", {"val_accuracy": 85.0, "macs": 5e5,
                                                     "sampled/val_accuracy": math.nan, "sampled/macs": math.nan})
    study = optuna.load_study(study_name="unit", storage=searcher._storage)
    first, second = study.trials
    assert first.values == [90.0, 1e6] and first.constraints[CONSTRAINT] == pytest.approx(-10.0)
    assert second.state == optuna.trial.TrialState.FAIL


def test_a_trial_builds_its_networks_from_the_shared_buffers_and_never_writes_them():
    """Networks come from the shared numpy state (built on the meta device, then filled): the
    same function as the originals, every tensor on the trial's device, none aliasing the
    read-only buffers that every trial on the node maps."""
    import copy

    import torch

    from raytailor.run import prepare
    from raytailor.search.shared import SharedTask, to_numpy_state

    spec = parse_spec({"name": "x", "method": "nettailor",
                       "backbone": {"arch": "resnet20", "weights": "asset:resnet20_shapes16.safetensors"},
                       "data": {"dataset": "synthetic", "image_size": 16, "num_classes": 3, "samples_per_class": 6},
                       "device": "cpu"})
    prepared = prepare(spec)
    teacher = copy.deepcopy(prepared.pretrained)
    with torch.no_grad():
        teacher.classifier.weight.add_(1.0)  # a different network than the backbone
    shared = SharedTask.from_prepared(prepared, teacher_state=to_numpy_state(teacher),
                                      teacher_metrics={"val_accuracy": 50.0})
    for array in [*shared.backbone_state.values(), *shared.teacher_state.values()]:
        array.flags.writeable = False  # as the object store hands them out
    built, built_teacher = shared.materialise()
    x = torch.randn(4, 3, 16, 16)
    for original, rebuilt in ((prepared.pretrained, built.pretrained), (teacher, built_teacher)):
        assert all(t.device.type == "cpu" for t in rebuilt.state_dict().values())
        assert torch.equal(original.eval()(x), rebuilt.eval()(x))
    before = {k: v.copy() for k, v in shared.backbone_state.items()}
    with torch.no_grad():
        for p in built.pretrained.parameters():
            p.add_(1.0)  # a trial training its copy
    assert all((shared.backbone_state[k] == v).all() for k, v in before.items())


def test_a_trial_that_failed_by_itself_is_an_error_with_its_reason_and_fail_in_optuna(tmp_path):
    """Its last report says why (no retry could help); Optuna is told FAIL, the row is ERROR."""
    last = {"failed": "TailoringError: pruning removed every path to the classifier", "finished": False,
            "epochs": 3, "done": True}
    searcher = _searcher(tmp_path)
    searcher.suggest("t")
    searcher.on_trial_complete("t", last)
    study = optuna.load_study(study_name="unit", storage=searcher._storage)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "digits"}})
    row = trial_row("t", {}, last, None, spec)
    assert row["status"] == "ERROR" and row["reason"] == last["failed"] and row["trained_epochs"] == 3
    assert row["val_accuracy"] is None and not row["feasible"]


def test_a_trial_the_budget_cut_short_is_a_finished_trial_whose_reason_says_so():
    """It ended with the models it had ready: TERMINATED with its chosen model's metrics and the
    reason; the same report without ``cut_short`` has no reason, and a stopped trial keeps the
    stop's reason even if its last report said cut_short (it never finished)."""
    from raytailor.search.early_stopping import Stop
    from raytailor.search.results import CUT_SHORT_REASON

    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "digits"}})
    last = {"finished": True, "cut_short": True, "epochs": 14, "val_accuracy": 96.5, "test_accuracy": 95.0,
            "macs": 4e6, "params": 1e5, "task_params": 1e4, "feasible": True}
    row = trial_row("t", {}, last, None, spec)
    assert (row["status"], row["reason"], row["trained_epochs"]) == ("TERMINATED", CUT_SHORT_REASON, 14)
    assert row["feasible"] and row["val_accuracy"] == 96.5 and "budget" in CUT_SHORT_REASON
    assert trial_row("t", {}, {**last, "cut_short": False}, None, spec)["reason"] is None
    stop = Stop(rung=0, epochs=14, reason="stopped at epoch 14: the search's budget of 40 training epochs was spent")
    stopped = trial_row("t", {}, {"epochs": 14, "cut_short": True}, None, spec, stop=stop)
    assert (stopped["status"], stopped["reason"]) == ("STOPPED", stop.reason)


def test_trial_tensorboard_names_what_the_trial_reported_and_keeps_integers(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from raytailor.search.tensorboard import TrialTensorBoard

    class Trial:
        local_path = str(tmp_path / "trial")
        evaluated_params = {"skips": 2, "blocks_removed": 3, "theta": 0.05}

        def init_local_path(self):
            (tmp_path / "trial").mkdir(exist_ok=True)

    trial = Trial()
    board = TrialTensorBoard(space=SPACE)
    bookkeeping = {"done": False, "time_this_iter_s": 1.0, "training_iteration": 1, "iterations_since_restore": 1,
                   "config/skips": 2, "trial_id": "t"}
    for epoch in (1, 2):
        board.log_trial_result(epoch, trial, {**bookkeeping, "student/loss": 1.0 / epoch, "epochs": epoch,
                                              "estimate/macs": 5e6})
    board.log_trial_result(3, trial, {**bookkeeping, "val_accuracy": 91.0, "macs": 4e6, "params": 1e5,
                                      "task_params": 1e4, "test_accuracy": 90.0, "feasible": True, "epochs": 3,
                                      "finished": True})
    board.log_trial_end(trial)
    events = EventAccumulator(str(tmp_path / "trial"))
    events.Reload()
    # per-epoch scalars, and each HParams metric's value (what the HParams table shows)
    assert set(events.Tags()["scalars"]) == {"student/loss", "epochs", "estimate/macs", "val_accuracy", "macs",
                                             "feasible", "params", "task_params", "test_accuracy"}
    assert [e.step for e in events.Scalars("student/loss")] == [1, 2]
    assert [(e.step, e.value) for e in events.Scalars("val_accuracy")] == [(3, 91.0)]
    assert [e.value for e in events.Scalars("feasible")] == [1.0]
    infos = {}
    for data in events.PluginTagToContent("hparams").values():
        parsed = plugin_data_pb2.HParamsPluginData.FromString(data)
        if parsed.HasField("experiment"):
            metrics = [m.name.tag for m in parsed.experiment.metric_infos]
            infos = {h.name: h for h in parsed.experiment.hparam_infos}
    assert metrics == ["val_accuracy", "macs", "feasible", "params", "task_params", "test_accuracy",
                       "best_val_accuracy", "epochs"]  # every trial the same keys (NaN where unknown)
    assert [v.string_value for v in infos["blocks_removed"].domain_discrete.values] == ["0", "1", "2", "3", "4", "5"]
    assert [v.string_value for v in infos["skips"].domain_discrete.values] == ["1", "2", "3"]
    assert not infos["theta"].HasField("domain_discrete")  # a float range stays continuous
    assert pickle.loads(pickle.dumps(board)).space == SPACE


def test_a_kept_trial_whose_end_tensorboard_never_logged_gets_it_once(tmp_path):
    """The driver interrupted between a trial's end (its final checkpoint, or its stop) and Tune's
    callbacks: the resume writes the run's end (HParams and the metrics' scalars) once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard import SummaryWriter

    from raytailor.search.tensorboard import complete_trial_end

    folder = tmp_path / "trial"
    with SummaryWriter(str(folder)) as writer:  # what Tune logged before the interruption
        writer.add_scalar("student/loss", 1.0, global_step=1)
    last = {"val_accuracy": 91.0, "macs": 4e6, "params": 1e5, "task_params": 1e4, "test_accuracy": 90.0,
            "feasible": True, "best_val_accuracy": 92.0, "epochs": 3, "finished": True}
    params = {"skips": 2, "blocks_removed": 3, "theta": 0.05, "task": "four"}
    assert complete_trial_end(folder, params, last, SPACE)
    assert not complete_trial_end(folder, params, last, SPACE)  # once: the folder has it now
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val_accuracy")] == [(3, 91.0)]
    keys = []
    for data in events.PluginTagToContent("hparams").values():
        parsed = plugin_data_pb2.HParamsPluginData.FromString(data)
        if parsed.HasField("session_start_info"):
            keys = sorted(parsed.session_start_info.hparams)
    assert keys == ["blocks_removed", "skips", "task", "theta"]
    # a stopped trial: its last estimate, never feasible (as the tables and a live search show it)
    stopped = tmp_path / "stopped"
    assert complete_trial_end(stopped, params, {"epochs": 2, "estimate/val_accuracy": 40.0, "estimate/macs": 5e6}, SPACE)
    events = EventAccumulator(str(stopped))
    events.Reload()
    assert [e.value for e in events.Scalars("feasible")] == [0.0] and events.Scalars("val_accuracy")[0].value == 40.0


def test_search_progress_says_where_each_trial_is_and_what_it_would_produce():
    import io

    from raytailor.search.progress import SearchProgress

    class Trial:
        def __init__(self, trial_id, config=None):
            self.trial_id, self.last_result, self.config = trial_id, {}, config or {}

    stream = io.StringIO()
    progress = SearchProgress(trials=4, concurrent=2, accuracy_target=90.0, stream=stream, plain=True)
    a, b = Trial("aaaa1111"), Trial("bbbb2222")
    for trial in (a, b):
        progress.on_trial_start(0, [], trial)
    progress.on_trial_result(0, [], a, {"student/loss": 1.0, "epochs": 1, "estimate/val_accuracy": 85.0,
                                        "estimate/macs": 5e6, "done": False, "time_this_iter_s": 1.0})
    progress.on_trial_result(0, [], b, {"student/loss": 1.0, "epochs": 1, "estimate/val_accuracy": 95.0,
                                        "estimate/macs": 8e6})
    a.last_result = {"student/loss": 1.0, "epochs": 2}  # ended by early stopping after epoch 2
    progress.on_trial_complete(0, [], a)
    b.last_result = {"finished": True, "val_accuracy": 96.0, "macs": 7e6, "epochs": 3}
    progress.on_trial_result(0, [], b, b.last_result)
    progress.on_trial_complete(0, [], b)
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("[search] 2/4 done (1 stopped), 0 running, 2 to go; leanest feasible 7,000,000 MACs")
    assert lines[-1].endswith("| bbbb2222 done: val 96.00%, macs 7,000,000")
    assert any(line.endswith("| aaaa1111 student") for line in lines)
    assert any(line.endswith("| aaaa1111 stopped") for line in lines)
    table = progress.table().splitlines()
    assert table[2].split() == ["aaaa1111", "stopped", "student", "1", "85.00", "5,000,000", "no"]
    assert table[3].split() == ["bbbb2222", "done", "student", "3", "96.00", "7,000,000", "yes"]
    assert pickle.loads(pickle.dumps(progress)).lines == {}

    # a multi-task search: each trial judged against its task's target, the leanest per task
    progress = SearchProgress(trials=4, concurrent=2, accuracy_target={"easy": 90.0, "hard": 50.0},
                              stream=io.StringIO(), plain=True)
    for trial_id, task, accuracy, macs in (("e1", "easy", 80.0, 1e6), ("h1", "hard", 60.0, 2e6)):
        trial = Trial(trial_id, {"task": task})
        progress.on_trial_start(0, [], trial)
        trial.last_result = {"finished": True, "val_accuracy": accuracy, "macs": macs, "epochs": 3}
        progress.on_trial_result(0, [], trial, trial.last_result)
        progress.on_trial_complete(0, [], trial)
    assert "to go; hard: leanest feasible 2,000,000 MACs (h1);" in progress.summary()
    table = progress.table().splitlines()
    assert table[1].split()[:2] == ["task", "trial"] and table[2].split()[:2] == ["easy", "e1"]
    assert table[2].split()[-1] == "no" and table[3].split()[-1] == "yes"

    # with a budget: the epochs spent so far (a resume's kept trials too) against it
    progress = SearchProgress(trials=4, concurrent=2, accuracy_target=90.0, stream=io.StringIO(), plain=True,
                              budget_epochs=48, spent_epochs=20)
    progress.on_trial_start(0, [], a)
    progress.on_trial_result(0, [], a, {"student/loss": 1.0, "epochs": 7})
    assert progress.summary().endswith("to go; 27/48 epochs of the budget")


def test_a_stopped_trial_shows_its_last_estimate_in_hparams_as_in_the_tables():
    from raytailor.search.tensorboard import hparam_metrics

    stopped = hparam_metrics({"epochs": 2, "student/loss": 1.0, "estimate/val_accuracy": 70.0,
                              "estimate/macs": 5e6, "estimate/params": 1e5, "estimate/task_params": 1e4})
    assert stopped["val_accuracy"] == 70.0 and stopped["macs"] == 5e6 and stopped["feasible"] == 0.0
    assert math.isnan(stopped["test_accuracy"]) and stopped["epochs"] == 2.0
    final = hparam_metrics({"finished": True, "val_accuracy": 91.0, "macs": 4e6, "feasible": True, "epochs": 3})
    assert final["val_accuracy"] == 91.0 and final["feasible"] == 1.0 and math.isnan(final["params"])


def test_resume_brings_the_study_up_to_the_trial_folders(tmp_path):
    """A trial that ended while the driver died is told now; one still RUNNING whose Ray trial
    never ended goes back to WAITING and the next trial asked runs its values again; a trial the
    study already knows is left as it is."""
    import pyarrow.fs

    from raytailor.search.runner import _reconcile_study
    from raytailor.search.searcher import journal_storage
    from raytailor.search.trial_folders import TrialRecord

    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "digits"}, "space": {"theta": {"low": 0.01, "high": 0.2}}})
    journal = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="s", storage=journal_storage(journal), directions=["maximize", "minimize"])
    values = {}
    for ray_id in ("told", "ended", "cut"):
        trial = study.ask()
        values[ray_id] = trial.suggest_float("theta", 0.01, 0.2)
        trial.set_user_attr("ray_trial_id", ray_id)
        if ray_id == "told":
            study.tell(trial, [90.0, 5.0])
    final = {"val_accuracy": 91.0, "macs": 4.0, "finished": True, "feasible": True}
    ended = {"ended": TrialRecord("ended", pyarrow.fs.LocalFileSystem(), str(tmp_path), {"theta": values["ended"]},
                                  reports=[final])}
    _reconcile_study(journal, "s", spec, ended, accuracy_target=85.0)
    study = optuna.load_study(study_name="s", storage=journal_storage(journal))
    by_ray = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert by_ray["told"].values == [90.0, 5.0]
    assert by_ray["ended"].state == optuna.trial.TrialState.COMPLETE and by_ray["ended"].values == [91.0, 4.0]
    assert by_ray["ended"].constraints[CONSTRAINT] == pytest.approx(-6.0)
    assert by_ray["cut"].state == optuna.trial.TrialState.WAITING
    again = study.ask()
    assert again.number == by_ray["cut"].number and again.suggest_float("theta", 0.01, 0.2) == values["cut"]


def test_tasks_of_one_search_put_their_common_backbone_into_the_object_store_once():
    """Two tasks' SharedTasks, each loaded on its own: after sharing, every frozen tensor is one
    array for both and is serialised once (what Ray's object store holds); each task's fresh
    classifier, data and teacher stay its own, and each task's trial builds the same networks."""
    import torch

    from raytailor.run import prepare
    from raytailor.search.shared import SharedTask, serialized_bytes, to_numpy_state

    tasks = {}
    for name, classes in (("three", 3), ("five", 5)):
        spec = parse_spec({"name": name, "method": "nettailor",
                           "backbone": {"arch": "resnet20", "weights": "asset:resnet20_shapes16.safetensors"},
                           "data": {"dataset": "synthetic", "image_size": 16, "num_classes": classes,
                                    "samples_per_class": 6}, "device": "cpu"})
        prepared = prepare(spec)
        tasks[name] = (prepared, SharedTask.from_prepared(prepared, teacher_state=to_numpy_state(prepared.pretrained),
                                                          teacher_metrics={"val_accuracy": 50.0}))
    (three_prepared, three), (five_prepared, five) = tasks.values()
    separate = serialized_bytes({"three": three, "five": five})
    frozen = sum(a.nbytes for k, a in five.backbone_state.items() if not k.startswith("classifier."))
    shared_bytes = five.share_backbone_with(three)
    assert shared_bytes == frozen  # every tensor but the classifier (3 vs 5 classes)
    assert all(five.backbone_state[k] is three.backbone_state[k] for k in five.backbone_state
               if not k.startswith("classifier."))
    together = serialized_bytes({"three": three, "five": five})
    assert separate - together == pytest.approx(frozen, rel=0.01)
    x = torch.randn(2, 3, 16, 16)
    for prepared, task in ((three_prepared, three), (five_prepared, five)):
        built, _ = task.materialise()
        assert torch.equal(prepared.pretrained.eval()(x), built.pretrained.eval()(x))


class _ScriptedSearcher:
    """A task's searcher: hands out numbered configs and records what it is told."""

    metric, mode = ["val_accuracy", "macs"], ["max", "min"]

    def __init__(self):
        self.asked, self.results, self.completed = [], [], []

    def suggest(self, trial_id):
        self.asked.append(trial_id)
        return {"skips": len(self.asked)}

    def on_trial_result(self, trial_id, result):
        self.results.append(trial_id)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, error))


def test_a_multitask_search_asks_each_task_in_turn_up_to_its_budget_and_routes_every_trial():
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    from raytailor.search.tasks import TaskScheduler, TaskSearcher

    searchers = {"a": _ScriptedSearcher(), "b": _ScriptedSearcher()}
    router = TaskSearcher(searchers, max_trials={"a": 3, "b": 1})
    configs = [router.suggest(f"t{i}") for i in range(5)]
    assert [c["task"] for c in configs[:4]] == ["a", "b", "a", "a"] and configs[4] == Searcher.FINISHED
    assert configs[2] == {"skips": 2, "task": "a"}
    router.on_trial_result("t1", {"epochs": 1})
    router.on_trial_complete("t1", {"val_accuracy": 1.0})
    router.on_trial_complete("t0", None, error=True)
    assert searchers["b"].results == ["t1"] and searchers["b"].completed == [("t1", False)]
    assert searchers["a"].completed == [("t0", True)] and searchers["a"].results == []

    class Decides(TrialScheduler):
        def __init__(self, decision):
            self.decision, self.seen = decision, []

        def on_trial_result(self, controller, trial, result):
            self.seen.append(trial.trial_id)
            return self.decision

        def on_trial_complete(self, controller, trial, result):
            self.seen.append(f"{trial.trial_id} done")

    schedulers = {"a": Decides(TrialScheduler.STOP), "b": Decides(TrialScheduler.CONTINUE)}
    scheduler = TaskScheduler(schedulers)
    trial_a, trial_b = (SimpleNamespace(trial_id=i, config={"task": t}) for i, t in (("t0", "a"), ("t1", "b")))
    assert scheduler.on_trial_result(None, trial_a, {}) == TrialScheduler.STOP
    assert scheduler.on_trial_result(None, trial_b, {}) == TrialScheduler.CONTINUE
    scheduler.on_trial_complete(None, trial_b, {})
    assert schedulers["a"].seen == ["t0"] and schedulers["b"].seen == ["t1", "t1 done"]


def test_the_bulletin_posts_the_leanest_feasible_cost_and_the_spent_budget_and_falls_back_to_its_seed():
    """What a search's trials read before each pruning they might fine-tune (methods.Goal
    .leaner_than): the least cost offered, never a non-finite one; and whether they may go on
    past their ready candidates (Goal.go_on): until the scheduler posts the budget spent (every
    trial) or the trial wound up (that one). An actor whose process dies is started again with
    what it held. Once the actor is gone for good: the seed (the teacher's cost) and go on, so a
    lost actor costs work, never a model."""
    import ray

    from raytailor.search.bulletin import SearchBulletin

    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")  # private
    try:
        leanest = SearchBulletin(1000.0)
        assert leanest.least() == 1000.0
        for cost, least in [(800.0, 800.0), (900.0, 800.0), (float("nan"), 800.0), (500.0, 500.0)]:
            leanest.offer(cost)
            assert leanest.least() == least
        trial_copy = ray.get(ray.put(leanest))  # as a trial gets it (tune.with_parameters)
        trial_copy.offer(400.0)
        assert leanest.least() == 400.0
        assert trial_copy.go_on() and leanest.go_on()
        leanest.wind_up("t1")  # the scheduler's side: early stopping's call on trial t1
        deadline = time.monotonic() + 60
        while trial_copy.go_on("t1") and time.monotonic() < deadline:  # wind_up() does not wait
            time.sleep(0.05)
        assert not trial_copy.go_on("t1") and trial_copy.go_on("t2") and trial_copy.go_on()

        def restarted():  # its process dies; Ray starts it again (asynchronous: wait for the new one)
            pid = ray.get(leanest._actor.__ray_call__.remote(lambda board: os.getpid()))
            ray.kill(leanest._actor, no_restart=False)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if ray.get(leanest._actor.__ray_call__.remote(lambda board: os.getpid()), timeout=10) != pid:
                        return True
                except ray.exceptions.RayError:
                    pass
                time.sleep(0.1)
            return False

        assert restarted()
        assert trial_copy.least() == 400.0 and not trial_copy.go_on("t1") and trial_copy.go_on("t2")
        leanest.spend()  # the scheduler's side
        deadline = time.monotonic() + 60
        while trial_copy.go_on() and time.monotonic() < deadline:  # spend() does not wait
            time.sleep(0.05)
        assert not trial_copy.go_on()
        assert restarted()
        assert trial_copy.least() == 400.0 and not trial_copy.go_on("t2")
        state = ray.get(leanest._actor.__ray_call__.remote(lambda board: board.state))
        leanest.close()  # the driver's, after the trials: the actor and its file go
        assert not state.exists()
        leanest = SearchBulletin(1000.0)
        ray.kill(leanest._actor)  # for good; asynchronous: a call made at once may still reach it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                ray.get(leanest._actor.least.remote(), timeout=10)
            except ray.exceptions.RayError:
                break  # gone
            time.sleep(0.1)
        assert leanest.least() == 1000.0
        assert leanest.go_on()
        leanest.offer(10.0)  # nothing raised
        leanest.close()  # nothing raised
    finally:
        ray.shutdown()


def test_a_search_starts_a_private_ray_unless_given_an_address(monkeypatch):
    """``ray.init()`` with no address joins whatever Ray the machine runs (RAY_ADDRESS, the last
    cluster started): a search given no address asks for a new local instance, and joins only the
    address it was given."""
    import ray

    from raytailor.search.runner import _init_ray

    asked = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: asked.append(kwargs["address"]))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    _init_ray(None)
    _init_ray("auto")
    _init_ray("10.0.0.5:6379")
    assert asked == ["local", "auto", "10.0.0.5:6379"]


def test_a_private_ray_starts_while_the_driver_imports_and_ends_without_waiting_on_its_monitor():
    """The driver's Tune, callbacks and output writers are imported while ``ray.init`` waits on
    the processes it starts, so importing the runner must not import Tune itself; and a private
    instance's end kills the autoscaler monitor (which would hold Ray's shutdown a second) and
    shuts Ray down. In a fresh interpreter: what is imported is the point."""
    code = textwrap.dedent("""
        import sys
        import ray
        import raytailor.search.runner as runner
        assert "ray.tune" not in sys.modules, "importing the runner imports Tune: nothing overlaps ray.init"
        runner._init_ray(None)
        assert {"ray.tune", "raytailor.search.callbacks", "raytailor.search.scheduler"} <= set(sys.modules)
        monitor = ray._private.worker._global_node.all_processes["monitor"][0].process
        at_shutdown, shutdown = [], ray.shutdown
        ray.shutdown = lambda *args, **kwargs: (at_shutdown.append(monitor.poll()), shutdown(*args, **kwargs))
        runner._end_private_ray(object())  # another instance than the one running: left alone
        assert at_shutdown == [] and monitor.poll() is None
        runner._end_private_ray(ray._private.worker._global_node)
        assert at_shutdown == [-9], at_shutdown  # killed before Ray's shutdown, not left to it
        assert not ray.is_initialized()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
