"""The Ray Tune function trainable: one tailoring run per trial, built from shared refs.

Per-epoch metrics go out through ``ray.tune.report`` (TensorBoard gets them, namespaced by
stage: ``student/loss``, ``finetune/val_accuracy``, ``student/attention_block_mean`` ...), with
``epochs`` (training epochs so far, every stage counted) and, when the method says what the
run would produce, ``estimate/val_accuracy``, ``estimate/macs``, ``estimate/params``,
``estimate/task_params`` (what early stopping judges), and ``candidates_ready`` where the run
could end now with that many candidates (``methods.CANDIDATES_READY``: what the budget reads).
The last report carries the objectives (val_accuracy, test_accuracy, params, macs,
task_params), ``feasible``, ``finished`` and the exported model as the trial's checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from raytailor.errors import RaytailorError
from raytailor.methods import CANDIDATES_READY, CUT_SHORT, SUBMODELS_STAGE, estimate_of
from raytailor.pareto import leanest_cost, meets_target
from raytailor.run import run_method, save_run
from raytailor.search.bulletin import SearchBulletin
from raytailor.search.location import TASK
from raytailor.search.shared import SharedTask
from raytailor.stage_checkpoints import INDEX, StageCheckpoints, resumable


OBJECTIVE_METRICS = ("val_accuracy", "params", "macs", "task_params")
SAMPLED = "sampled"  # prefix of the final report's metrics for the sub-model of the sampled values
EPOCHS = "epochs"    # training epochs so far (every stage), in every report
RESTORED_EPOCHS = "restored_epochs"  # the epochs of the checkpoint the trial continued from
ESTIMATE = "estimate"  # prefix of a per-epoch report's estimate (raytailor.methods.estimate_of)
FINISHED = "finished"  # True in the last report of a trial that ran to its end
FAILED = "failed"      # the one-line reason in the last report of a trial that failed by itself
BEST_VAL_ACCURACY = "best_val_accuracy"  # final report: the most accurate sub-model's


def is_finished(metrics: dict[str, Any]) -> bool:
    """The trial ran to its end: its last result is the final report, not a per-epoch one (a
    trial early stopping ended has a per-epoch one last, and Tune sets ``done`` on it too).
    Only a final report has a top-level ``val_accuracy`` (searches before ``finished`` existed)."""
    if FINISHED in metrics:
        return bool(metrics[FINISHED])
    return "val_accuracy" in metrics and FAILED not in metrics


def ran_to_its_end(metrics: dict[str, Any]) -> bool:
    """Finished (``is_finished``) and not cut short: it trained every model it would have (what a
    trial spends and gains to its end is learned from these only; one that ended with the models
    it had ready, the budget spent or early stopping's call, stopped short of that)."""
    return is_finished(metrics) and not metrics.get(CUT_SHORT)


def sampled_submodel(metrics: dict[str, Any], values: dict[str, Any]) -> dict[str, Any] | None:
    """The sub-model that stands for the trial's own hyper-parameter ``values``: the chosen one if
    it does (TransTailor's sub-models all do), else the first that does (NetTailor: the pruning at
    the sampled theta and K), None if none does (that pruning left no path)."""
    records = metrics.get("submodels") or []
    own = [r for r in records
           if all(values.get(k) == v for k, v in (r.get("own_hyperparameters") or {}).items())]
    chosen = [r for r in own if r["submodel"] == metrics.get("chosen_submodel")]
    return (chosen or own or [None])[0]


def best_val_accuracy(submodels: list[dict] | None, chosen: float) -> float:
    """``BEST_VAL_ACCURACY``: the most accurate of a run's sub-models (``chosen``, the chosen
    one's, where the run lists none)."""
    return max((r["val_accuracy"] for r in submodels or []), default=chosen)


def final_metrics(metrics: dict[str, Any], accuracy_target: float, values: dict[str, Any]) -> dict[str, Any]:
    """The trial's last report: its chosen sub-model's metrics (the tables, the console) and, as
    ``sampled/<metric>``, those of the sub-model of the sampled values (what Optuna is told)."""
    import ray

    feasible = meets_target(metrics["val_accuracy"], accuracy_target)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}  # the
    # list of sub-models stays in the checkpoint's result.json
    sampled = sampled_submodel(metrics, values)
    own = {f"{SAMPLED}/{k}": float("nan") if sampled is None else sampled[k] for k in OBJECTIVE_METRICS}
    best = best_val_accuracy(metrics.get("submodels"), metrics["val_accuracy"])
    return {**scalars, **own, "feasible": bool(feasible), BEST_VAL_ACCURACY: best, FINISHED: True,
            "done": True, "node_id": ray.get_runtime_context().get_node_id()}


def restart_key(config: dict[str, Any]) -> str:
    """The name a resumed search gives an interrupted trial's checkpoint: its sampled values
    (the trial that runs them again finds it by its own)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _restore(folder: Path, config: dict[str, Any], restarts: str | None) -> None:
    """Put the trial's last stage checkpoint into ``folder``: Tune's (a retry after its worker
    died), else the one a resumed search left for these values."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as saved:
            if (Path(saved) / INDEX).is_file():  # not a final checkpoint (those end a trial)
                shutil.copytree(saved, folder, dirs_exist_ok=True)
        return
    if restarts is None:
        return
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(restarts) if "://" in restarts else (
        pyarrow.fs.LocalFileSystem(), restarts)
    source = f"{path}/{restart_key(config)}"
    if filesystem.get_file_info(f"{source}/{INDEX}").type == pyarrow.fs.FileType.File:
        pyarrow.fs.copy_files(source, str(folder), source_filesystem=filesystem,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())


def tailoring_trial(config: dict[str, Any], shared: SharedTask | dict[str, SharedTask],
                    restarts: str | None = None,
                    bulletin: SearchBulletin | dict[str, SearchBulletin] | None = None) -> None:
    """One trial. Its training state is saved as it goes (``stage_checkpoints``; every
    ``search.checkpoint_every`` epochs and each stage's end) and handed to Tune with that
    epoch's report: a retried trial continues from it, and so does one a resume runs again
    (``restarts``: where the resume left interrupted trials' checkpoints, by ``restart_key``).
    A multi-task search shares ``{task: SharedTask}`` and names the trial's task in its config.
    ``bulletin``: the cost of the search's (task's) leanest feasible model so far, which the run
    may leave out work above (``methods.Goal.leaner_than``) and the trial lowers once its own
    feasible model is saved; and whether the search's budget is spent or early stopping would stop
    this trial, after which the run ends with the candidates it has ready (``methods.Goal.go_on``)."""
    if isinstance(shared, dict):
        shared = shared[config[TASK]]
    if isinstance(bulletin, dict):
        bulletin = bulletin[config[TASK]]
    prepared, teacher = shared.materialise()
    values = {**shared.spec.hyperparameters(), **{k: v for k, v in config.items() if k != TASK}}
    with tempfile.TemporaryDirectory() as scratch:
        stages = Path(scratch) / "stages"
        stages.mkdir()
        _restore(stages, config, restarts)
        checkpoints = StageCheckpoints(stages, every=shared.spec.search.checkpoint_every)
        _run_trial(prepared, teacher, values, shared, checkpoints, bulletin)


def _go_on(bulletin: SearchBulletin | None, spec: Any) -> Any:
    """What the run asks before training a candidate it could end without: the bulletin, for this
    trial. None where nothing would ever say no (no budget, no early stopping)."""
    from ray import tune

    if bulletin is None or (spec.search.budget_epochs is None and spec.search.stopping is None):
        return None
    return functools.partial(bulletin.go_on, tune.get_context().get_trial_id())


def _run_trial(prepared: Any, teacher: Any, values: dict[str, Any], shared: SharedTask,
               checkpoints: StageCheckpoints, bulletin: SearchBulletin | None) -> None:
    from ray import tune

    epochs = restored = checkpoints.trained_epochs  # a restored trial goes on counting

    def on_epoch(stage: str, epoch: int, metrics: dict[str, float]) -> None:
        nonlocal epochs
        epochs += stage != SUBMODELS_STAGE  # a measured sub-model is no training epoch
        estimate = estimate_of(metrics) or {}
        ready = metrics.pop(CANDIDATES_READY, None)  # for the scheduler, at the top level
        saved = {}
        if checkpoints.saved:  # this epoch's state, with this epoch's report
            checkpoints.saved = False
            saved["checkpoint"] = tune.Checkpoint.from_directory(checkpoints.folder)
        tune.report({f"{stage}/{key}": value for key, value in metrics.items()} | {"stage_epoch": epoch}
                    | {f"{ESTIMATE}/{key}": value for key, value in estimate.items()} | {EPOCHS: epochs}
                    | {RESTORED_EPOCHS: restored} | ({} if ready is None else {CANDIDATES_READY: ready}), **saved)

    try:
        with resumable(checkpoints):
            run = run_method(prepared, teacher, values, on_epoch=on_epoch, verbose=False,
                             accuracy_target=shared.accuracy_target,
                             leaner_than=None if bulletin is None else bulletin.least,
                             go_on=_go_on(bulletin, shared.spec))
    except RaytailorError as error:
        # it failed by itself (pruning cut every path, the loss diverged): the same values would
        # fail again, so it ends here with its reason, never retried (search.max_failures
        # retries only trials whose worker died)
        tune.report({FAILED: f"{type(error).__name__}: {error}", FINISHED: False, EPOCHS: epochs})
        return
    with tempfile.TemporaryDirectory() as folder:
        save_run(run, Path(folder))
        final = final_metrics(run.metrics, shared.accuracy_target, values)
        tune.report(final | {EPOCHS: epochs}, checkpoint=tune.Checkpoint.from_directory(folder))
    if bulletin is not None:  # its feasible sub-models were saved with the report above
        cost = leanest_cost(shared.spec.objectives)
        feasible = [r[cost] for r in run.metrics.get("submodels") or [run.metrics]
                    if meets_target(r["val_accuracy"], shared.accuracy_target)]
        if feasible:
            bulletin.offer(min(feasible))
