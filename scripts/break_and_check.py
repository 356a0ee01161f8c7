"""Break one behaviour at a time and check that the tests named for it fail.

Each entry: what is broken, the file(s), the exact text replaced, its replacement, the tests
that must fail. The breaks are applied to a copy of the committed tree (``git archive HEAD``)
in a temporary folder, one at a time, and reverted after; the checkout is never touched.

    .venv/bin/python scripts/break_and_check.py              # the unit-level breaks (~2 min)
    .venv/bin/python scripts/break_and_check.py --contract   # the method contract (~1 min)
    .venv/bin/python scripts/break_and_check.py --slow       # searches and accuracy floors (~6 min)
    .venv/bin/python scripts/break_and_check.py tau plot     # only breaks whose name has a word

A line "caught" means the tests failed (pytest exit 1); anything else is printed as NOT CAUGHT.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
ROOT = Path(tempfile.mkdtemp(prefix="raytailor-breaks-"))

MUTATIONS = [
    ("the budget stops no trial", "raytailor/search/budget.py",
     "        if before < self.limit:", "        if True:",
     ["tests/test_budget.py::test_the_epoch_that_crosses_the_budget_goes_on_and_the_next_one_stops",
      "tests/test_budget.py::test_the_scheduler_stops_training_trials_once_the_budget_is_spent_never_a_final_report"]),
    ("the budget stops the trial whose epoch crossed it", "raytailor/search/budget.py",
     "        before = self.spent\n        self.epochs[trial] = epochs\n",
     "        self.epochs[trial] = epochs\n        before = self.spent\n",
     ["tests/test_budget.py::test_the_epoch_that_crosses_the_budget_goes_on_and_the_next_one_stops"]),
    ("the searcher starts trials after the budget is spent", "raytailor/search/searcher.py",
     "        if self.budget is not None and not self.budget.room_for_another:", "        if False:",
     ["tests/test_budget.py::test_the_searcher_starts_no_trial_once_the_budget_is_spent"]),
    ("the searcher waits for room with no trial running", "raytailor/search/searcher.py",
     "            return None if self.budget.running else Searcher.FINISHED", "            return None",
     ["tests/test_budget.py::test_the_searcher_starts_no_trial_once_the_budget_is_spent"]),
    ("the searcher never says a trial ended", "raytailor/search/searcher.py",
     "            self.budget.ended(trial_id)", "            pass",
     ["tests/test_budget.py::test_the_searcher_starts_no_trial_once_the_budget_is_spent"]),
    ("the budget holds nothing back for running trials", "raytailor/search/budget.py",
     "        owed = sum(max(0, self.trial_epochs - self.epochs.get(trial, 0)) for trial in self.running)",
     "        owed = 0",
     ["tests/test_budget.py::test_no_trial_starts_that_the_budget_left_could_not_carry_to_its_end"]),
    ("the budget starts a trial that cannot reach its end", "raytailor/search/budget.py",
     "        return self.spent + owed + max(self.trial_epochs, 1) <= self.limit",
     "        return self.spent + owed < self.limit",
     ["tests/test_budget.py::test_no_trial_starts_that_the_budget_left_could_not_carry_to_its_end"]),
    ("NetTailor's fewest epochs leave out the fine-tune", "raytailor/nettailor/method.py",
     '        return min(values["student_epochs"]) + min(values["finetune_epochs"])',
     '        return min(values["student_epochs"])',
     ["tests/test_budget.py::test_the_fewest_epochs_of_a_trial_come_from_its_method_and_every_value_the_spec_allows"]),
    ("a task waiting for room blocks the others", "raytailor/search/tasks.py",
     "            elif isinstance(config, dict):", "            elif True:",
     ["tests/test_budget.py::test_a_task_waiting_for_room_in_its_budget_lets_the_others_start_trials"]),
    ("the searcher misses the epoch a trial was stopped at", "raytailor/search/searcher.py",
     "        # a result the scheduler stopped the trial at reaches the searcher here only\n        self._count_epochs(trial_id, result)\n",
     "",
     ["tests/test_budget.py::test_the_searcher_starts_no_trial_once_the_budget_is_spent"]),
    ("a spent budget ends the whole multi-task search", "raytailor/search/tasks.py",
     "                self.max_trials[task] = self.asked[task]",
     "                return Searcher.FINISHED",
     ["tests/test_budget.py::test_a_task_whose_budget_is_spent_leaves_its_turns_to_the_others"]),
    ("leanest_first fine-tunes the run's own pruning first", "raytailor/nettailor/finetune_order.py",
     "        self.order = sorted(range(len(self.costs)), key=lambda p: self.costs[p])",
     "        self.order = [0] + sorted(range(1, len(self.costs)), key=lambda p: self.costs[p])",
     ["tests/test_method_contract.py::test_leanest_first_fine_tunes_only_what_could_be_chosen",
      "tests/test_finetune_order.py::test_the_leanest_that_reaches_the_target_is_found_when_accuracy_grows_with_cost"]),
    ("a missing probe does not end leanest_first's walk", "raytailor/nettailor/finetune_order.py",
     "            self._done = True", "            pass",
     ["tests/test_finetune_order.py::test_a_missing_probe_ends_the_walk_and_a_reaching_one_lets_it_go_on_below"]),
    ("leanest_first names a fine-tune by its count, not its pruning", "raytailor/nettailor/pipeline.py",
     "        k = rank[position] if leanest_first else len(outcome.prunings)", "        k = len(outcome.prunings)",
     ["tests/test_stage_checkpoints.py::test_a_leanest_first_run_continued_under_a_lower_bound_loads_no_pruning_into_another"]),
    ("a lone sub-model of another pruning is not told to the sampler", "raytailor/search/callbacks.py",
     "        if not records:", "        if len(records or []) < 2:",
     ["tests/test_method_contract.py::test_a_trial_whose_one_sub_model_is_another_pruning_teaches_the_sampler"]),
    ("a task's trial results reach the first task's searcher", "raytailor/search/tasks.py",
     "            self.searchers[self.task_of[trial_id]].on_trial_complete(trial_id, result=result, error=error)",
     "            next(iter(self.searchers.values())).on_trial_complete(trial_id, result=result, error=error)",
     ["tests/test_search_units.py::test_a_multitask_search_asks_each_task_in_turn_up_to_its_budget_and_routes_every_trial"]),
    ("a multi-task spec's task target is ignored", "raytailor/spec.py",
     '        for section in ("data", "target", "teacher"):', '        for section in ("data", "teacher"):',
     ["tests/test_spec.py::test_a_spec_with_tasks_gives_each_task_its_own_whole_spec"]),
    ("a restarted stage trains from its first epoch again", "raytailor/train.py",
     "        done = saved[\"epoch\"]", "        done = 0",
     ["tests/test_stage_checkpoints.py::test_a_fit_cut_short_continues_to_the_same_weights"]),
    ("a stage continues without its optimizer momentum", "raytailor/stage_checkpoints.py",
     "                optimizer.state[param][\"momentum_buffer\"] = momentum[name].clone()", "                pass",
     ["tests/test_stage_checkpoints.py::test_a_fit_cut_short_continues_to_the_same_weights"]),
    ("a skipped stage leaves the loader at another epoch", "raytailor/train.py",
     "            train_loader.set_epoch(epochs + 1)\n", "",
     ["tests/test_stage_checkpoints.py::test_transtailor_cut_short_in_its_second_step_ends_as_the_uninterrupted_run"]),
    ("resume leaves an interrupted trial RUNNING in the study", "raytailor/search/runner.py",
     "            storage.set_trial_state_values(frozen._trial_id, state=optuna.trial.TrialState.WAITING)",
     "            pass",
     ["tests/test_search_units.py::test_resume_brings_the_study_up_to_the_trial_folders"]),
    ("leanest_first fine-tunes prunings costlier than one that reached the target", "raytailor/nettailor/finetune_order.py",
     "                  and self.costs[p] < self.feasible_cost and self.costs[p] <= bound]",
     "                  and self.costs[p] <= bound]",
     ["tests/test_method_contract.py::test_leanest_first_fine_tunes_only_what_could_be_chosen",
      "tests/test_finetune_order.py::test_the_leanest_that_reaches_the_target_is_found_when_accuracy_grows_with_cost"]),
    ("leanest_first ignores the bound", "raytailor/nettailor/finetune_order.py",
     "        bound = self.bound() if self.tried else math.inf", "        bound = math.inf",
     ["tests/test_finetune_order.py::test_nothing_costlier_than_the_bound_is_fine_tuned_past_the_leanest",
      "tests/test_method_contract.py::test_leanest_first_fine_tunes_only_what_could_be_chosen"]),
    ("a cut line in result.json breaks reading the trials", "raytailor/search/trial_folders.py",
     "            continue  # a line cut off by a full disk or a killed process", "            raise",
     ["tests/test_trial_folders.py::test_trials_are_read_from_json_and_broken_folders_give_what_can_be_read"]),
    ("early stopping keeps every dominated trial", "raytailor/search/early_stopping.py",
     "        if better < keep:", "        if True:",
     ["tests/test_early_stopping.py::test_a_dominated_trial_is_stopped_and_one_on_the_front_is_kept"]),
    ("early stopping ignores the accuracy target", "raytailor/search/early_stopping.py",
     "        if margin is not None and point.accuracy + margin < self.accuracy_target:", "        if False:",
     ["tests/test_early_stopping.py::test_a_trial_far_below_the_target_is_stopped_once_finished_trials_set_the_margin"]),
    ("a stopped trial is told to Optuna as finished", "raytailor/search/searcher.py",
     "    if result and not error and FAILED not in result and not is_finished(result):", "    if False:",
     ["tests/test_early_stopping.py::test_a_stopped_trial_is_pruned_in_the_journal_and_stopped_in_the_tables"]),
    ("NetTailor's estimate is the dense student's accuracy", "raytailor/nettailor/projection.py",
     "            student.disable(set(student.paths) - set(survivors))", "            pass",
     ["tests/test_nettailor_network.py::test_projected_accuracy_is_the_compacted_models_and_leaves_the_student_dense"]),
    ("the training loop reads the device every step", "raytailor/train.py",
     "            correct = correct + (logits.detach().argmax(dim=1) == labels).sum()",
     "            correct = correct + int((logits.detach().argmax(dim=1) == labels).sum())",
     ["tests/test_train.py::test_the_training_loop_reads_the_device_once_per_epoch_whatever_the_steps"]),
    ("gamma1 weight dropped from the objective", "raytailor/nettailor/pipeline.py",
     "loss = loss + gamma1 * expected", "loss = loss + expected",
     ["tests/test_nettailor_objective.py::test_objective_matches_values_computed_by_hand"]),
    ("gamma2 weight dropped from the objective", "raytailor/nettailor/pipeline.py",
     "loss = loss + gamma2 * omega", "loss = loss + omega",
     ["tests/test_nettailor_objective.py::test_objective_matches_values_computed_by_hand"]),
    ("Omega summed instead of averaged", "raytailor/nettailor/distillation.py",
     "return torch.stack(terms).mean()", "return torch.stack(terms).sum()",
     ["tests/test_nettailor_objective.py::test_objective_matches_values_computed_by_hand"]),
    ("teacher run with autograd", "raytailor/nettailor/pipeline.py",
     "        with torch.no_grad():\n            teacher_nodes, teacher_logits = teacher.forward_nodes(images)",
     "        if True:\n            teacher_nodes, teacher_logits = teacher.forward_nodes(images)",
     ["tests/test_nettailor_objective.py::test_objective_trains_only_task_parameters_and_never_the_teacher"]),
    ("fine-tune keeps gamma1", "raytailor/nettailor/pipeline.py",
     'f"finetune_{k}", gamma1=0.0,', 'f"finetune_{k}", gamma1=config.gamma1,',
     ["tests/test_nettailor_objective.py::test_finetune_stage_has_no_complexity_term_and_leaves_frozen_blocks_unchanged"]),
    ("frozen blocks unfolded and in train mode", ["raytailor/nettailor/pipeline.py", "raytailor/nettailor/network.py"],
     ['with folded_attributes(network, ["stem", "blocks"]):', "        self.blocks.eval()\n"],
     ['with folded_attributes(network, []):', "\n"],
     ["tests/test_nettailor_objective.py::test_finetune_stage_has_no_complexity_term_and_leaves_frozen_blocks_unchanged"]),
    ("folding forgets the BN shift", "raytailor/fold.py",
     "setattr(sequential, name, fuse_conv_bn_eval(conv, bn))",
     "bn.bias.data.zero_(); setattr(sequential, name, fuse_conv_bn_eval(conv, bn))",
     ["tests/test_nettailor_objective.py::test_folded_training_step_equals_the_unfolded_one"]),
    ("folded modules not restored", "raytailor/fold.py",
     "        for name, module in originals.items():\n            setattr(owner, name, module)",
     "        pass",
     ["tests/test_nettailor_objective.py::test_folded_training_step_equals_the_unfolded_one"]),
    ("tau compared with the best sub-model", "raytailor/transtailor/pipeline.py",
     "        last_accepted = accuracy\n", "        last_accepted = max(last_accepted, accuracy)\n",
     ["tests/test_transtailor.py::test_tau_stop_on_a_scripted_chain"]),
    ("tau stop on a drop equal to tau", "raytailor/transtailor/pipeline.py",
     "return not (last_accepted - accuracy > tau)", "return not (last_accepted - accuracy >= tau)",
     ["tests/test_transtailor.py::test_tau_compares_with_the_last_accepted_submodel",
      "tests/test_transtailor.py::test_chain_without_a_large_drop_runs_to_max_iterations"]),
    ("chosen sub-model is the rejected one", "raytailor/transtailor/pipeline.py",
     "            outcome.stopped_at, outcome.stop_reason = iteration, \"tau\"\n",
     "            outcome.stopped_at, outcome.stop_reason = iteration, \"tau\"\n            outcome.chosen_iteration = iteration\n",
     ["tests/test_transtailor.py::test_tau_stop_on_a_scripted_chain"]),
    ("plot draws infeasible models as feasible", "raytailor/front_plot.py",
     '    feasible = [r for r in completed if bool(r.get("feasible") or False)]',
     '    feasible = list(completed)',
     ["tests/test_pareto.py::test_plot_front_draws_every_model_the_front_the_teacher_and_the_target"]),
    ("plot target line at the teacher", "raytailor/front_plot.py",
     "        target = float(teacher[y_key]) - float(max_drop)", "        target = float(teacher[y_key])",
     ["tests/test_pareto.py::test_plot_front_draws_every_model_the_front_the_teacher_and_the_target"]),
    ("plot without the collapsed-model marker", "raytailor/front_plot.py",
     "        ax.scatter([float(r[x_key]) for r in below], [bottom] * len(below),",
     "        below = []; ax.scatter([float(r[x_key]) for r in below], [bottom] * len(below),",
     ["tests/test_pareto.py::test_plot_front_edge_cases"]),
    ("proxy attention starts at -1.9", "raytailor/nettailor/network.py",
     "PROXY_LOGIT_INIT = -2.0", "PROXY_LOGIT_INIT = -1.99",
     ["tests/test_nettailor_network.py::test_initial_attention_is_plus_two_block_minus_two_proxy"]),
    ("fit returns the first epoch's metrics", "raytailor/train.py",
     "        if on_epoch is not None:\n            on_epoch(stage, epoch, metrics)\n    return metrics",
     "        if on_epoch is not None:\n            on_epoch(stage, epoch, metrics)\n        first = first if epoch > 1 else metrics\n    return first",
     ["tests/test_train.py::test_cosine_schedule_decays_to_near_zero_and_training_ends_on_the_last_step"]),
    ("samplers ignore the seed", "raytailor/search/searcher.py",
     "        return optuna.samplers.RandomSampler(seed=seed)", "        return optuna.samplers.RandomSampler(seed=None)",
     ["tests/test_search_units.py::test_every_sampler_is_built_seeded_and_reproducible[random]"]),
    ("TPE ignores the seed", "raytailor/search/searcher.py",
     "optuna.samplers.TPESampler(seed=seed,", "optuna.samplers.TPESampler(seed=None,",
     ["tests/test_search_units.py::test_every_sampler_is_built_seeded_and_reproducible[tpe]"]),
    (".pt read with pickle", "raytailor/backbones/weights.py",
     "torch.load(path, map_location=\"cpu\", weights_only=True)", "torch.load(path, map_location=\"cpu\", weights_only=False)",
     ["tests/test_backbones.py::test_pt_weights_are_read_without_running_pickled_code"]),
    ("unkept sub-model export message", "raytailor/export_run.py",
     "was not kept: another sub-model of the run", "is unavailable: another sub-model of the run",
     ["tests/test_transtailor.py::test_transtailor_tailor_export_and_evaluate_end_to_end"]),
]

CONTRACT = [
    ("duplicate prunings kept", "raytailor/nettailor/pipeline.py",
     "        if frozenset(survivors) in seen:", "        if False:",
     ["tests/test_method_contract.py::test_one_student_gives_one_distinct_pruning_per_set_of_survivors"]),
    ("the run chooses the leanest whatever its accuracy", "raytailor/run.py",
     "        pick = leanest(rows, cost=cost)",
     "        pick = leanest([{**r, 'feasible': True} for r in rows], cost=cost)",
     ["tests/test_method_contract.py::test_a_methods_own_pick_wins_over_the_leanest"]),
    ("the sampler is told the trial's own point twice", "raytailor/search/searcher.py",
     "        if params == base or not _all_finite(", "        if not _all_finite(",
     ["tests/test_method_contract.py::test_sampler_is_told_every_other_pruning_as_a_trial_of_its_own"]),
    ("Optuna told the chosen sub-model's values", "raytailor/search/trainable.py",
     '    own = {f"{SAMPLED}/{k}": float("nan") if sampled is None else sampled[k] for k in OBJECTIVE_METRICS}',
     '    own = {}',
     ["tests/test_method_contract.py::test_final_report_tells_optuna_the_sampled_sub_model"]),
]

SLOW = [
    ("a retried trial starts over instead of continuing from its checkpoint", "raytailor/search/trainable.py",
     "    checkpoint = tune.get_checkpoint()\n", "    checkpoint = None\n",
     ["tests/test_search.py::test_a_trial_whose_worker_is_killed_continues_from_its_checkpoint_to_the_same_result"]),
    ("searches join the Ray instance RAY_ADDRESS names", "raytailor/search/runner.py",
     'ray.init(address=address or "local",', "ray.init(address=address,",
     ["tests/test_search.py::test_unreachable_target_gives_an_empty_front_and_failures_keep_their_reason"]),
    ("every task of a search holds its own copy of the backbone", "raytailor/search/prepare.py",
     "            shared[task].share_backbone_with(next(iter(shared.values())))", "            pass",
     ["tests/test_search.py::test_interrupted_multitask_search_resumes_without_losing_or_redoing_trials_and_banks_every_task",
      "tests/test_search.py::test_trials_spread_over_nodes_and_share_one_copy_per_node"]),
    ("a task folder's tables hold every task's trials", "raytailor/search/results.py",
     "            if task is None or r.config.get(TASK) == task]", "            ]",
     ["tests/test_search.py::test_interrupted_multitask_search_resumes_without_losing_or_redoing_trials_and_banks_every_task"]),
    ("tables are written only at the end of a search", "raytailor/search/callbacks.py",
     "        self._write(trial.trial_id)\n\n    def on_trial_error", "        pass\n\n    def on_trial_error",
     ["tests/test_search.py::test_a_full_disk_mid_search_leaves_tables_for_the_finished_trials"]),
    ("Ray's ResultGrid failing after the run ends the search", "raytailor/search/runner.py",
     "        if not ended.ended:\n            raise", "        raise",
     ["tests/test_search.py::test_a_full_disk_mid_search_leaves_tables_for_the_finished_trials"]),
    ("front ignores feasibility", "raytailor/pareto.py",
     "def _selectable(row: dict, keys: Sequence[str]) -> bool:\n",
     "def _selectable(row: dict, keys: Sequence[str]) -> bool:\n    return is_completed(row, keys)\n",
     ["tests/test_search.py::test_search_with_a_real_target_keeps_infeasible_models_off_the_front_and_repeats_with_its_seed"]),
    ("pruning removes the blocks with the highest attention", "raytailor/nettailor/pruning.py",
     "removed |= {p for _, p in blocks[:blocks_removed]}", "removed |= {p for _, p in blocks[len(blocks) - blocks_removed:]}",
     ["tests/test_accuracy_floor.py::test_nettailor_is_smaller_and_within_its_margin_of_the_teacher"]),
    ("TransTailor prunes the most important filters", "raytailor/transtailor/pipeline.py",
     "        betas = filter_importance(network, scales, train_loader, F.cross_entropy)\n",
     "        betas = [b.max() - b for b in filter_importance(network, scales, train_loader, F.cross_entropy)]\n",
     ["tests/test_accuracy_floor.py::test_transtailor_is_smaller_and_within_its_margin_of_the_teacher"]),
    ("TransTailor without fine-tuning after pruning", "raytailor/transtailor/pipeline.py",
     '        _train(network, stage=f"finetune_{iteration}", epochs=config.finetune_epochs,',
     '        _train(network, stage=f"finetune_{iteration}", epochs=0,',
     ["tests/test_accuracy_floor.py::test_transtailor_is_smaller_and_within_its_margin_of_the_teacher"]),
    ("the student learns no attention", "raytailor/nettailor/pipeline.py",
     '         {"params": list(network.attention.parameters()), "weight_decay": 0.0}],',
     '         {"params": list(network.attention.parameters()), "weight_decay": 0.0, "lr": 0.0}],',
     ["tests/test_accuracy_floor.py::test_nettailor_is_smaller_and_within_its_margin_of_the_teacher"]),
]


def run(mutations):
    for name, files, olds, news, tests in mutations:
        if isinstance(files, str):
            files, olds, news = [files], [olds], [news]
        originals = {}
        for file, old, new in zip(files, olds, news):
            path = ROOT / file
            originals.setdefault(path, path.read_text())
            text = path.read_text()
            assert text.count(old) == 1, (name, text.count(old))
            path.write_text(text.replace(old, new))
        try:
            done = subprocess.run([PY, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                                  capture_output=True, text=True)
        finally:
            for path, text in originals.items():
                path.write_text(text)
        verdict = "caught" if done.returncode == 1 else f"NOT CAUGHT (rc {done.returncode})"
        print(f"{verdict:>12}  {name}  <- {', '.join(t.split('::')[1] for t in tests)}", flush=True)


if __name__ == "__main__":
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(ROOT)], input=archive, check=True)
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen = SLOW if "--slow" in sys.argv else CONTRACT if "--contract" in sys.argv else MUTATIONS
    run([m for m in chosen if not only or any(o in m[0] for o in only)])
