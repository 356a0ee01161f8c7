"""One method contract: NetTailor's prunings of one student and TransTailor's chain are both
sub-models that run.py measures, chooses among and keeps by the same rules; a search tells
the sampler about every sub-model."""

import copy
import math

import optuna
import pytest
import torch

from raytailor.backbones import create_backbone
from raytailor.cost import count_params, image_macs
from raytailor.data import TensorLoader, load_splits
from raytailor.methods import (
    CANDIDATES_READY, Candidate, Goal, MethodOutcome, TailoringMethod, estimate_of, get_method, methods,
)
from raytailor.nettailor.config import NetTailorConfig
from raytailor.nettailor.finetune_order import fine_tune_order
from raytailor.nettailor.pipeline import pruning_grid, run_nettailor
from raytailor.pareto import mark_front
from raytailor.run import Prepared, run_method
from raytailor.search.searcher import CONSTRAINT, add_submodel_trials
from raytailor.search.space import DefineByRun
from raytailor.search.trainable import sampled_submodel
from raytailor.spec import ParamSpec, parse_spec
from raytailor.train import evaluate

DEMO_WEIGHTS = "asset:resnet20_shapes16.safetensors"


def test_methods_are_found_in_their_packages():
    assert sorted(methods()) == ["nettailor", "transtailor"]
    assert get_method("nettailor").config_type is NetTailorConfig
    assert all(isinstance(m, TailoringMethod) for m in methods().values())


def test_pruning_grid_starts_with_the_runs_own_values():
    config = NetTailorConfig(theta=0.05, blocks_removed=3, prune_thetas=[0.1, 0.05], prune_blocks=[0, 6])
    grid = pruning_grid(config)
    assert grid[0] == (0.05, 3) and len(grid) == len(set(grid)) == 2 * 3
    assert set(grid) == {(t, k) for t in (0.05, 0.1) for k in (0, 3, 6)}
    assert pruning_grid(NetTailorConfig(theta=0.2, blocks_removed=1)) == [(0.2, 1)]
    with pytest.raises(ValueError, match="prune_blocks"):
        NetTailorConfig(prune_blocks=[-1])


def _task(samples_per_class=12):
    splits = load_splits(dataset="synthetic", image_size=16, num_classes=3, samples_per_class=samples_per_class,
                         seed=2)
    loader = lambda split, train=False: TensorLoader(split, batch_size=16, mean=splits.mean, std=splits.std,
                                                     shuffle=train, seed=0)
    return splits, loader


def test_one_student_gives_one_distinct_pruning_per_set_of_survivors():
    splits, loader = _task()
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    stages = []
    # theta 0 and 1e-9 keep the same proxies (attention is never exactly 0): duplicates
    config = NetTailorConfig(skips=1, theta=0.0, blocks_removed=2, student_epochs=1, finetune_epochs=1,
                             prune_thetas=[1e-9, 0.5], prune_blocks=[0, 9], batch_size=16)
    outcome = run_nettailor(pretrained, copy.deepcopy(pretrained), config=config, image_size=16,
                            train_loader=loader(splits.train, True), val_loader=loader(splits.val), verbose=False,
                            on_epoch=lambda stage, epoch, m: stages.append(stage))
    assert stages.count("student") == 1  # one student for every pruning
    survivors = [frozenset(p.survivors) for p in outcome.prunings]
    assert len(set(survivors)) == len(survivors)  # no two prunings keep the same paths
    grid = pruning_grid(config)
    assert len(outcome.prunings) + outcome.duplicates + outcome.empty == len(grid) == 9
    assert outcome.duplicates >= 3  # theta 1e-9 repeats theta 0 for each K
    assert outcome.empty >= 1  # theta 0.5 and K 9 leave nothing
    first = outcome.prunings[0]
    assert (first.theta, first.blocks_removed) == (0.0, 2)
    for pruning in outcome.prunings:
        blocks = sum(p.kind == "block" for p in pruning.survivors)
        assert blocks <= 9 - pruning.blocks_removed
        assert {p.name for p in pruning.model.paths} == {p.name for p in pruning.survivors}
    assert stages.count("finetune") == 1 and len({s for s in stages if s.startswith("finetune_")}) == \
        len(outcome.prunings) - 1


def test_leanest_first_fine_tunes_only_what_could_be_chosen():
    """finetune_prunings: leanest_first fine-tunes the prunings ``LeanestFirst`` names
    (``tests/test_finetune_order.py``) and they come out as with "all" (a fine-tune does not
    depend on which ran before), so the run chooses the same unless a probe missed."""
    splits, loader = _task()
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)

    reports = []

    def run(policy, goal=None):
        config = NetTailorConfig(skips=1, theta=0.01, blocks_removed=2, student_epochs=1, finetune_epochs=1,
                                 prune_blocks=[0, 4, 6, 8], batch_size=16, finetune_prunings=policy)
        torch.manual_seed(0)
        reports.clear()
        outcome = run_nettailor(pretrained, copy.deepcopy(pretrained), config=config, image_size=16,
                                train_loader=loader(splits.train, True), val_loader=loader(splits.val),
                                verbose=False, goal=goal, on_epoch=lambda stage, _, m: reports.append((stage, m)))
        return outcome, {frozenset(p.survivors): (image_macs(p.model, 16), evaluate(p.model, loader(splits.val)))
                         for p in outcome.prunings}

    every, measured = run("all")
    assert len(measured) >= 4 and every.skipped == 0
    # a target every pruning reaches: the leanest, fine-tuned first, reaches it; the rest cost more
    goal = Goal(accuracy_target=min(acc for _, acc in measured.values()), cost="macs")
    assert run("all", goal)[0].skipped == 0  # "all" fine-tunes every pruning whatever the goal
    lean, kept = run("leanest_first", goal)
    cheapest = min(measured, key=lambda s: measured[s][0])
    assert list(kept) == [cheapest]  # the run's own pruning (K 2) is not fine-tuned first
    assert lean.skipped == len(measured) - 1 >= 3
    # its estimate: the leanest pruning of the grid at the dense student's accuracy, during the
    # student only (which pruning the run ends with is known only once one reaches the target)
    (stage, student), *rest = reports
    assert stage == "student" and estimate_of(student) == {
        "val_accuracy": student["val_accuracy"], "macs": measured[cheapest][0],
        "params": count_params(lean.prunings[0].model), "task_params": student["projected_task_params"]}
    assert rest and all(estimate_of(m) is None for _, m in rest)
    assert all(kept[s] == measured[s] for s in kept)  # the same fine-tuned models
    # a target only the most accurate reaches: the prunings fine-tuned are those LeanestFirst
    # names on the accuracies "all" measured (the grid's distinct prunings in the same order)
    best = max(measured, key=lambda s: (measured[s][1], -measured[s][0]))
    goal = Goal(accuracy_target=measured[best][1], cost="macs")
    lean, kept = run("leanest_first", goal)
    positions = list(measured)

    def named_by(policy):
        """The prunings ``policy``'s order names, told the accuracies "all" measured."""
        order, named = fine_tune_order(policy, [measured[s][0] for s in positions]), []
        while (position := order.next()) is not None:
            named.append(positions[position])
            order.reached(position, measured[positions[position]][1] >= goal.accuracy_target)
        return named

    expected = named_by("leanest_first")
    assert list(kept) == expected and lean.skipped == len(measured) - len(kept)
    assert all(kept[s] == measured[s] for s in kept)  # the same fine-tuned models
    # bisect, the same target: the prunings Bisect names on those accuracies, the middle first
    halved, kept = run("bisect", goal)
    assert list(kept) == named_by("bisect") and halved.skipped == len(measured) - len(kept)
    assert all(kept[s] == measured[s] for s in kept)
    # the run's choice is "all"'s unless a probe missed above it (accuracy fell with cost)
    chosen = min((s for s in measured if measured[s][1] >= goal.accuracy_target), key=lambda s: measured[s][0])
    if chosen not in kept:
        probe = expected[1]
        assert measured[probe][1] < goal.accuracy_target and measured[probe][0] > measured[chosen][0]
    # a target none reaches, with a bound (the teacher's cost, or a feasible model the search
    # holds): nothing costlier than the bound is fine-tuned, but the leanest always is; past it,
    # the probe (the costliest under the bound) misses, which ends the run
    costs = sorted(macs for macs, _ in measured.values())
    lean, kept = run("leanest_first", Goal(accuracy_target=101.0, cost="macs", leaner_than=lambda: costs[2]))
    assert sorted(macs for macs, _ in kept.values()) == [costs[0], costs[2]]
    assert lean.skipped == len(measured) - 2
    lean, kept = run("leanest_first", Goal(accuracy_target=101.0, cost="macs", leaner_than=lambda: 0.0))
    assert [macs for macs, _ in kept.values()] == [costs[0]] and lean.skipped == len(measured) - 1
    # leanest_up, the same target: the walk from the leanest up, no probe, under the same bound
    lean, kept = run("leanest_up", Goal(accuracy_target=101.0, cost="macs", leaner_than=lambda: costs[2]))
    assert sorted(macs for macs, _ in kept.values()) == costs[:3] and lean.skipped == len(measured) - 3
    with pytest.raises(ValueError, match="finetune_prunings must be one of all, leanest_first, leanest_up"):
        NetTailorConfig(finetune_prunings="some")


def test_a_student_told_not_to_go_on_ends_with_the_prunings_it_has_fine_tuned():
    """Goal.go_on (a search whose budget is spent, or whose early stopping would stop the run).
    The first pruning is always fine-tuned; while a later one trains, each report says how many
    are ready (the last epoch of a pruning counts it), and once go_on says no the run ends
    after that epoch's report with the ready ones, the one in training left out. They are the
    models an uninterrupted run fine-tunes first."""
    splits, loader = _task()
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    config = NetTailorConfig(skips=1, theta=0.01, blocks_removed=2, student_epochs=1, finetune_epochs=2,
                             prune_blocks=[0, 4, 6], batch_size=16)  # "all": every pruning fine-tuned

    def run(go_on=None, no_from=None):
        """``no_from``: (stage, epoch) whose report turns go_on to no."""
        state, reports = {"go": True}, []

        def on_epoch(stage, epoch, metrics):
            reports.append((stage, epoch, metrics))
            if (stage, epoch) == no_from:
                state["go"] = False

        torch.manual_seed(0)
        goal = Goal(accuracy_target=0.0, cost="macs", go_on=go_on or (lambda: state["go"]))
        outcome = run_nettailor(pretrained, copy.deepcopy(pretrained), config=config, image_size=16,
                                train_loader=loader(splits.train, True), val_loader=loader(splits.val),
                                verbose=False, goal=goal, on_epoch=on_epoch)
        return outcome, reports

    full, full_reports = run()
    assert len(full.prunings) >= 3 and not full.cut_short and full.skipped == 0
    ready = {(stage, epoch): m.get(CANDIDATES_READY) for stage, epoch, m in full_reports}
    assert ready[("student", 1)] is None and ready[("finetune", 1)] is None  # nothing ready yet
    # a candidate's last epoch counts it: the run could end with it now
    assert ready[("finetune", 2)] == 1 and ready[("finetune_1", 1)] == 1 and ready[("finetune_2", 2)] == 3
    val = loader(splits.val)
    # told no during the second pruning's first epoch: it ends there with the first
    cut, reports = run(no_from=("finetune_1", 1))
    assert cut.cut_short and len(cut.prunings) == 1 and cut.skipped == len(full.prunings) - 1
    assert [(stage, epoch) for stage, epoch, _ in reports][-1] == ("finetune_1", 1)
    assert evaluate(cut.prunings[0].model, val) == evaluate(full.prunings[0].model, val)
    # told no at the end of the second: the third is never started
    cut, reports = run(no_from=("finetune_1", 2))
    assert cut.cut_short and len(cut.prunings) == 2 and not any(s == "finetune_2" for s, _, _ in reports)
    # no from the start: the first pruning is fine-tuned to its end all the same
    cut, reports = run(go_on=lambda: False)
    assert cut.cut_short and len(cut.prunings) == 1
    assert [(stage, epoch) for stage, epoch, _ in reports] == [("student", 1), ("finetune", 1), ("finetune", 2)]


def test_run_method_measures_chooses_and_keeps_every_sub_model():
    splits, loader = _task()
    spec = parse_spec({
        "name": "grid", "method": "nettailor", "backbone": {"arch": "resnet20", "weights": DEMO_WEIGHTS},
        "data": {"dataset": "synthetic", "image_size": 16, "num_classes": 3}, "device": "cpu",
        "space": {"blocks_removed": {"low": 0, "high": 8, "default": 1}},
        "fixed": {"skips": 1, "theta": 0.01, "student_epochs": 1, "finetune_epochs": 1, "batch_size": 16,
                  "prune_blocks": [4, 8]},
    })
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    prepared = Prepared(spec=spec, splits=splits, pretrained=pretrained, device=torch.device("cpu"))
    reported = []
    target = 50.0
    run = run_method(prepared, copy.deepcopy(pretrained), spec.hyperparameters(), verbose=False,
                     accuracy_target=target, on_epoch=lambda stage, step, m: reported.append((stage, step, m)))
    records = run.metrics["submodels"]
    assert [r["submodel"] for r in records] == list(range(len(records))) and len(records) >= 2
    assert [r["own_hyperparameters"]["blocks_removed"] for r in records][0] == 1  # the run's own K first
    assert [(step, m["macs"]) for stage, step, m in reported if stage == "submodels"] == [
        (r["submodel"], r["macs"]) for r in records]
    # chosen: the leanest (MACs) sub-model that meets the target, else the most accurate
    feasible = [r for r in records if r["val_accuracy"] >= target]
    expected = min(feasible, key=lambda r: (r["macs"], -r["val_accuracy"])) if feasible else \
        max(records, key=lambda r: r["val_accuracy"])
    assert run.metrics["chosen_submodel"] == expected["submodel"]
    assert run.hyperparameters["blocks_removed"] == expected["own_hyperparameters"]["blocks_removed"]
    front = mark_front([{**r, "status": "TERMINATED", "feasible": r["val_accuracy"] >= target} for r in records],
                       spec.objectives)
    for record, row in zip(records, front):
        assert record["kept"] == (row["on_front"] or record["submodel"] == expected["submodel"])
    assert sorted(s.metrics["submodel"] for s in run.submodels) == sorted(
        r["submodel"] for r in records if r["kept"] and r["submodel"] != expected["submodel"])
    for sub in [run, *run.submodels]:  # measured on the module itself
        assert count_params(sub.model) == sub.metrics["params"] and image_macs(sub.model, 16) == sub.metrics["macs"]
    # estimates (what early stopping judges): every student epoch and the own pruning's fine-tune
    # say what the run will produce; the other prunings' fine-tunes do not. The last one is
    # exactly what the own pruning (it0) measures at the end
    estimates = [(stage, estimate_of(m)) for stage, step, m in reported if stage != "submodels"]
    assert all(e is not None for stage, e in estimates if stage in ("student", "finetune"))
    assert all(e is None for stage, e in estimates if stage.startswith("finetune_"))
    student = [m for stage, _, m in reported if stage == "student"]
    assert student and all("projected_val_accuracy" in m for m in student)  # the pruned student's
    last = [e for _, e in estimates if e is not None][-1]
    assert last == {k: float(records[0][k]) for k in ("val_accuracy", "macs", "params", "task_params")}


class _Fixed(TailoringMethod):
    """A method whose candidates are given: the choice and keep rules, with nothing trained."""

    name = "fixed"

    def __init__(self, widths, chosen=None):
        self.widths, self.chosen = widths, chosen

    def tailor(self, pretrained, teacher, config, **kwargs):
        models = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, w), torch.nn.Linear(w, 3))
                  for w in self.widths]
        return MethodOutcome([Candidate(m, {}, [m], {"width": w}) for m, w in zip(models, self.widths)],
                             chosen=self.chosen, details={"note": "x"})


def test_a_methods_own_pick_wins_over_the_leanest(monkeypatch):
    from raytailor import run as run_module

    splits, _ = _task(samples_per_class=4)
    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "synthetic", "image_size": 16, "num_classes": 3}, "device": "cpu"})
    prepared = Prepared(spec=spec, splits=splits, pretrained=create_backbone("resnet20", num_classes=3),
                        device=torch.device("cpu"))
    accuracies = iter([50.0, 50.0, 60.0, 60.0, 40.0, 40.0])  # (val, test) per candidate: widths 8, 4, 2
    monkeypatch.setattr(run_module, "evaluate", lambda model, loader: next(accuracies))
    monkeypatch.setattr("raytailor.methods.get_method", lambda name: _Fixed([8, 4, 2], chosen=0))
    run = run_method(prepared, None, {}, verbose=False, accuracy_target=45.0)
    assert run.metrics["chosen_submodel"] == 0 and run.metrics["note"] == "x"
    # width 4 dominates width 8 (more accurate, cheaper); width 2 misses the target: neither kept but the pick
    assert [r["kept"] for r in run.metrics["submodels"]] == [True, True, False]
    accuracies = iter([50.0, 50.0, 60.0, 60.0, 40.0, 40.0])
    monkeypatch.setattr("raytailor.methods.get_method", lambda name: _Fixed([8, 4, 2]))
    run = run_method(prepared, None, {}, verbose=False, accuracy_target=45.0)
    assert run.metrics["chosen_submodel"] == 1  # the leanest feasible: width 4


def test_sampler_is_told_every_other_pruning_as_a_trial_of_its_own(tmp_path):
    space = {"blocks_removed": ParamSpec(low=0, high=6, default=3), "theta": ParamSpec(low=0.01, high=0.2),
             "gamma1": ParamSpec(low=0.1, high=1.0, when={"blocks_removed": [9]})}
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({"blocks_removed": 2, "theta": 0.05})
    trial = study.ask()
    constants = DefineByRun(space, {"gamma1": 0.3})(trial)
    config = {**trial.params, **constants}
    own = {"blocks_removed": trial.params["blocks_removed"], "theta": trial.params["theta"]}
    records = [
        {"submodel": 0, "own_hyperparameters": own, "val_accuracy": 90.0, "macs": 100},
        {"submodel": 1, "own_hyperparameters": {**own, "blocks_removed": 6}, "val_accuracy": 70.0, "macs": 40},
        {"submodel": 2, "own_hyperparameters": {**own, "theta": 0.15}, "val_accuracy": 85.0, "macs": 80},
        {"submodel": 3, "own_hyperparameters": {**own, "blocks_removed": 7}, "val_accuracy": 60.0, "macs": 30},
        {"submodel": 4, "own_hyperparameters": {**own, "theta": 0.1}, "val_accuracy": math.nan, "macs": 50},
    ]
    added = add_submodel_trials(study, space=space, config=config, records=records,
                                metrics=["val_accuracy", "macs"], accuracy_target=80.0, trial_id="abc")
    assert added == 2  # the trial's own point, K=7 (outside 0..6) and a NaN accuracy are not told
    extra = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [t.params for t in extra] == [{**own, "blocks_removed": 6}, {**own, "theta": 0.15}]
    assert [t.values for t in extra] == [[70.0, 40], [85.0, 80]]
    assert [t.constraints[CONSTRAINT] for t in extra] == [10.0, -5.0]
    assert [t.system_attrs["constraints"] for t in extra] == [[10.0], [-5.0]]  # where optuna-dashboard looks
    assert all(t.user_attrs["ray_trial_id"] == "abc" for t in extra)
    assert "gamma1" not in extra[0].params  # an inactive conditional stays out


def test_a_trial_whose_one_sub_model_is_another_pruning_teaches_the_sampler(tmp_path):
    """finetune_prunings: leanest_first may fine-tune only the leanest pruning, not the trial's
    own: the study gets it as a trial of its own (the trial's own point, never measured, FAIL)."""
    import json

    from ray import tune

    from raytailor.search.callbacks import SubmodelsToStudy
    from raytailor.search.searcher import journal_storage

    space = {"blocks_removed": ParamSpec(low=0, high=6, default=3)}
    storage = journal_storage(tmp_path / "optuna.journal")
    optuna.create_study(study_name="unit", storage=storage, directions=["maximize", "minimize"])
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "result.json").write_text(json.dumps({"submodels": [
        {"submodel": 0, "own_hyperparameters": {"blocks_removed": 6}, "val_accuracy": 91.0, "macs": 40}]}))

    class Trial:
        trial_id, config = "abc", {"blocks_removed": 2}
        checkpoint = tune.Checkpoint.from_directory(str(tmp_path / "checkpoint"))

    SubmodelsToStudy(journal=tmp_path / "optuna.journal", study_name="unit", space=space,
                     metrics=["val_accuracy", "macs"], accuracy_target=90.0).on_trial_complete(0, [], Trial())
    (told,) = optuna.load_study(study_name="unit", storage=storage).trials
    assert told.params == {"blocks_removed": 6} and told.values == [91.0, 40]
    assert sampled_submodel({"submodels": [{"submodel": 0, "own_hyperparameters": {"blocks_removed": 6}}],
                             "chosen_submodel": 0}, {"blocks_removed": 2}) is None  # own point: FAIL


def test_final_report_names_the_sub_model_of_the_sampled_values():
    records = [{"submodel": 0, "own_hyperparameters": {"theta": 0.05, "blocks_removed": 2}, "val_accuracy": 90.0},
               {"submodel": 1, "own_hyperparameters": {"theta": 0.05, "blocks_removed": 5}, "val_accuracy": 85.0}]
    metrics = {"submodels": records, "chosen_submodel": 1}
    assert sampled_submodel(metrics, {"theta": 0.05, "blocks_removed": 2})["submodel"] == 0
    assert sampled_submodel(metrics, {"theta": 0.05, "blocks_removed": 5})["submodel"] == 1
    assert sampled_submodel(metrics, {"theta": 0.1, "blocks_removed": 2}) is None
    chain = {"submodels": [{"submodel": k, "own_hyperparameters": {}} for k in range(3)], "chosen_submodel": 2}
    assert sampled_submodel(chain, {"tau": 1.0})["submodel"] == 2  # TransTailor: the chosen step


def test_final_report_tells_optuna_the_sampled_sub_model(monkeypatch):
    import ray

    from raytailor.search.trainable import final_metrics

    class _Context:
        def get_node_id(self):
            return "node"

    monkeypatch.setattr(ray, "get_runtime_context", lambda: _Context())
    records = [{"submodel": 0, "own_hyperparameters": {"blocks_removed": 2}, "val_accuracy": 90.0, "params": 10,
                "macs": 100, "task_params": 1},
               {"submodel": 1, "own_hyperparameters": {"blocks_removed": 5}, "val_accuracy": 85.0, "params": 5,
                "macs": 50, "task_params": 1}]
    metrics = {**records[1], "submodels": records, "chosen_submodel": 1}  # the trial chose the leaner pruning
    report = final_metrics(metrics, 80.0, {"blocks_removed": 2})
    assert report["macs"] == 50 and report["feasible"] and report["done"]  # the tables: the chosen one
    assert (report["sampled/val_accuracy"], report["sampled/macs"]) == (90.0, 100)  # Optuna: the sampled one
    assert "submodels" not in report  # the list stays in the checkpoint
    report = final_metrics(metrics, 80.0, {"blocks_removed": 3})  # that pruning left no path
    assert math.isnan(report["sampled/val_accuracy"])


@pytest.mark.parametrize("method,fixed", [
    ("nettailor", {"skips": 1, "theta": 0.0, "blocks_removed": 1, "student_epochs": 1, "finetune_epochs": 1,
                   "batch_size": 16}),
    ("transtailor", {"classifier_epochs": 1, "factor_epochs": 1, "finetune_epochs": 1, "max_iterations": 1,
                     "prune_fraction": 0.2, "batch_size": 16}),
])
def test_both_methods_run_every_stage_in_bf16(method, fixed):
    """precision: bf16 reaches every stage (TransTailor's importance and surgery excepted, which
    stay fp32 by design); what is measured and exported is fp32."""
    splits, _ = _task()
    spec = parse_spec({"name": "bf16", "method": method, "backbone": {"arch": "resnet20", "weights": DEMO_WEIGHTS},
                       "data": {"dataset": "synthetic", "image_size": 16, "num_classes": 3}, "device": "cpu",
                       "precision": "bf16", "fixed": fixed})
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    prepared = Prepared(spec=spec, splits=splits, pretrained=pretrained, device=torch.device("cpu"))
    assert prepared.precision == "bf16"
    run = run_method(prepared, copy.deepcopy(pretrained), spec.hyperparameters(), verbose=False, accuracy_target=0.0)
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    assert 0 <= run.metrics["val_accuracy"] <= 100 and run.metrics["macs"] == image_macs(run.model, 16)
