"""Run, and resume, a search: the only place that drives Ray Tune.

Output folder (``--out``): spec.yaml, teacher.json, optuna.journal (the study), trials/ (Ray's
experiment: one folder per trial with TensorBoard events), trials.parquet, submodels.parquet,
pareto.parquet, pareto.png, models/<id>/, summary.json, early_stopping.json (its decisions),
budget.json (the trials the budget stopped).

A multi-task search (a spec with ``tasks:``) runs every task in the one experiment: the folder
holds spec.yaml (as written), search.json, trials/ (every task's trials) and summary.json (per
task and in total), and one folder per task with the files above but trials/ (its spec.yaml is
the task's own single-task spec).
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import json
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from raytailor.errors import SpecError
from raytailor.pareto import leanest_cost, target_resolution
from raytailor.run import dump_spec
from raytailor.search.budget import BUDGET_FILE, EpochBudget
from raytailor.search.early_stopping import RECORD_FILE
from raytailor.search.location import (
    EXPERIMENT,
    TASK,
    experiment_path,
    experiment_storage,
    storage_location,
    task_of,
)
from raytailor.search.results import (
    final_metrics,
    search_rows,
    stopped_in,
    wound_up_in,
    write_combined_summary,
    write_outputs,
)
from raytailor.search.shared import serialized_bytes
from raytailor.search.trainable import EPOCHS, ran_to_its_end, restart_key
from raytailor.search.trial_folders import (
    RESTARTS,
    TrialRecord,
    keep_for_restart,
    read_trials,
    remove_restarts,
    set_aside,
)
from raytailor.search.space import DefineByRun
from raytailor.spec import MultiTaskSpec, Spec, load_search_spec

JOURNAL = "optuna.journal"


@dataclasses.dataclass
class SearchTask:
    """One task of a search and where its outputs go. ``name`` None: a single-task search, whose
    folder is the search folder and whose trials' configs name no task."""

    name: str | None
    folder: Path
    spec: Spec
    study_name: str
    trials: int = 0   # trials to run now
    seed: int = 0     # the sampler's seed for them
    spent_epochs: int = 0  # training epochs its trials kept from an earlier run spent (resume)
    finished_epochs: list[int] = dataclasses.field(default_factory=list)  # those of each that ran to its end
    kept_leanest: float = math.inf  # the cost of the leanest feasible model they saved (resume)
    shared: Any = None  # its SharedTask, once prepared


def _tasks(spec: Spec | MultiTaskSpec, out_dir: Path) -> list[SearchTask]:
    if isinstance(spec, MultiTaskSpec):
        return [SearchTask(name, out_dir / name, task_spec, study_name=name, trials=task_spec.search.trials,
                           seed=task_spec.search.seed) for name, task_spec in spec.tasks.items()]
    return [SearchTask(None, out_dir, spec, study_name=out_dir.name, trials=spec.search.trials, seed=spec.search.seed)]


def _metadata(spec: Spec) -> dict[str, str]:
    import optuna
    import ray
    import torch

    import raytailor

    versions = {"raytailor": raytailor.__version__, "torch": str(torch.__version__),
                "ray": ray.__version__, "optuna": optuna.__version__}
    return {"spec": yaml.safe_dump(spec.to_dict(), sort_keys=False), "versions": json.dumps(versions)}


def _objective_metrics(spec: Spec) -> tuple[list[str], list[str]]:
    metrics = ["val_accuracy" if o == "accuracy" else o for o in spec.objectives]
    return metrics, ["max" if o == "accuracy" else "min" for o in spec.objectives]


# What the driver imports once Ray runs (Tune, the search's callbacks, scheduler and searcher,
# the writers of its outputs): loaded while ray.init waits on the processes it starts (about
# 2 of its 2.5 s on 2 cores). ray.init itself stays on the main thread: the GCS and raylet are
# started bound to the thread that starts them, and die when it ends.
_DRIVER_MODULES = (
    "ray.tune", "raytailor.search.callbacks", "raytailor.search.scheduler", "raytailor.search.searcher",
    "raytailor.search.progress", "raytailor.search.tasks", "raytailor.search.tensorboard",
    "torch.utils.tensorboard", "matplotlib.backends.backend_agg", "matplotlib.figure", "pyarrow.parquet",
)


def _import_driver_modules() -> None:
    """Import ``_DRIVER_MODULES`` ahead of their use; one that fails is left to the import that
    needs it, which reports the error where it matters."""
    for name in _DRIVER_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a head start only: the real import raises it again
            return


def _init_ray(address: str | None) -> None:
    """Join ``address`` if one was given, else start a private Ray instance, while a helper
    thread imports what the driver needs next (``_DRIVER_MODULES``).

    ``ray.init()`` with no address attaches to any Ray already running on the machine (another
    search, a test suite) through ``/tmp/ray/ray_current_cluster`` or ``RAY_ADDRESS``; when that
    one ends, every trial of this search dies. ``"local"`` always starts a new instance and
    ignores both. ``--address auto`` still joins the running cluster on purpose."""
    import ray

    import optuna

    # raytailor's own live view shows the search (search/progress.py); Tune's console reporter
    # would print its configuration box and a TensorBoard path in Ray's session folder, and
    # Optuna a line per study created
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    importing = threading.Thread(target=_import_driver_modules, name="raytailor-imports", daemon=True)
    importing.start()
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 configure_logging=True, logging_level="ERROR")
    finally:
        importing.join()
    if address is None:  # runs before Ray's own exit handler (registered at import)
        atexit.register(_end_private_ray, getattr(ray._private.worker, "_global_node", None))


def _end_private_ray(started: Any) -> None:
    """Shut the private instance down at exit, without two waits of Ray's own exit handler
    (about 1.5 of the 1.7 s a search's end took on 2 cores). That handler sleeps half a second
    for the workers' log lines to reach the driver (a search takes none: ``log_to_driver`` is
    off). And the shutdown stops Ray's processes one after another, each given a second to exit
    on SIGTERM: the autoscaler monitor, the one process of a single machine's instance that keeps
    nothing, spends that whole second reporting its end to the GCS stopped before it. It is
    killed first, reached through Ray's private node object (a Ray where that changed only
    gets the slower shutdown back). ``started``: the node ``_init_ray`` started; an instance
    started after it (a caller who shut this one down and started their own) is left to Ray's
    own handler."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None or node is not started:
        return
    try:
        for info in node.all_processes.get("monitor", []) if node.is_head() else []:
            info.process.kill()
            info.process.wait(timeout=1)
    except Exception:  # noqa: BLE001 - Ray's shutdown below stops it in any case
        pass
    ray.shutdown()


def _space(spec: Spec) -> DefineByRun:
    """What the searcher samples: the spec's space; an inactive entry takes its default, else
    the fixed or the method's value."""
    defaults = {f.name: f.default for f in dataclasses.fields(type(spec.method_config()))} | spec.fixed
    return DefineByRun(spec.space, defaults)


def _trainable(spec: Spec, shared: Any, restarts: str | None = None, bulletin: Any = None):
    from ray import tune

    from raytailor.search.trainable import tailoring_trial

    resources = spec.search.resources
    return tune.with_resources(
        tune.with_parameters(tailoring_trial, shared=shared, restarts=restarts, bulletin=bulletin),
        {"cpu": resources.cpu, "gpu": resources.gpu})


def _budget(task: SearchTask, *, recorded: bool) -> EpochBudget | None:
    """The task's ``search.budget_epochs`` less what its kept trials spent (``recorded``: the
    scheduler's, which writes its stops)."""
    limit = task.spec.search.budget_epochs
    if limit is None:
        return None
    return EpochBudget(limit, spent_before=task.spent_epochs, record=task.folder / BUDGET_FILE if recorded else None,
                       trial_epochs=task.spec.fewest_epochs(), finished_before=task.finished_epochs)


def _searcher(task: SearchTask, accuracy_target: float, metrics: list[str], modes: list[str]):
    """The task's Optuna searcher on the study in its journal, its sampler seeded ``task.seed``
    and planned for the trials the task's spec buys (``searcher.planned_trials``)."""
    from raytailor.search.searcher import ConstrainedOptunaSearch, sampler_for

    return ConstrainedOptunaSearch(
        space=_space(task.spec), metric=metrics, mode=modes, sampler=sampler_for(task.spec, task.seed),
        study_name=task.study_name, accuracy_target=accuracy_target, storage_path=task.folder / JOURNAL,
        budget=_budget(task, recorded=False),
    )


def _scheduler(task: SearchTask, accuracy_target: float, bulletin: Any = None):
    """Early stopping (``search.early_stopping``) and the budget (``search.budget_epochs``, posted
    on ``bulletin`` once spent), or Tune's first-in first-out without either."""
    from ray.tune.schedulers import FIFOScheduler

    from raytailor.search.scheduler import ConstrainedEarlyStopping

    settings, budget = task.spec.search.stopping, _budget(task, recorded=True)
    if settings is None and budget is None:
        return FIFOScheduler()
    if settings is None:
        return ConstrainedEarlyStopping(record=None, budget=budget, bulletin=bulletin)
    return ConstrainedEarlyStopping(record=task.folder / RECORD_FILE, budget=budget, bulletin=bulletin,
                                    **_stopping_rules(task.spec, accuracy_target,
                                                      len(task.shared.arrays["val_labels"])))


def _stopping_rules(spec: Spec, accuracy_target: float, val_images: int | None = None) -> dict[str, Any]:
    """``early_stopping.EarlyStopping``'s settings for ``spec`` (its early stopping switched on);
    ``val_images``: how many images its validation accuracies are measured on."""
    costs = [objective for objective in spec.objectives if objective != "accuracy"]
    return {"costs": costs, "accuracy_target": accuracy_target, "val_images": val_images,
            **dataclasses.asdict(spec.search.stopping)}


def _run_config(spec: Spec, storage: str, verbose: bool, callbacks: list | None = None):
    from ray import tune

    # Tune's own output stays off: raytailor's progress callback shows the search (search/progress.py)
    return tune.RunConfig(name=EXPERIMENT, storage_path=storage, verbose=0, callbacks=callbacks,
                          failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1))  # a trial's latest state


def _run_trials(tasks: list[SearchTask], *, storage: str, verbose: bool, restarts: str | None = None) -> None:
    """Run each task's ``trials`` in one Tune experiment, each task's searcher on the study in
    its journal with a sampler seeded ``seed``. The outputs are read from the trial folders
    afterwards: Tune's own ResultGrid is never used. Building it unpickles every failed trial's
    ``error.pkl``, which a full disk leaves empty; a failure there, once every trial has ended,
    is not the search's."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from raytailor.search.callbacks import RunEnded, StoppedToTensorBoard, SubmodelsToStudy, TablesAsTrialsEnd
    from raytailor.search.bulletin import SearchBulletin
    from raytailor.search.progress import SearchProgress
    from raytailor.search.tasks import ForTask, TaskScheduler, TaskSearcher
    from raytailor.search.tensorboard import TrialTensorBoard

    spec = tasks[0].spec  # what is not a task's own (data, target, teacher) is the same for every task
    metrics, modes = _objective_metrics(spec)
    cost = leanest_cost(spec.objectives)  # what trials may leave out work above, by task
    bulletins = {task.name: SearchBulletin(min(task.shared.teacher_metrics[cost], task.kept_leanest))
                 for task in tasks}
    searchers, schedulers, callbacks, ended_trials = {}, {}, [], {}
    for task in tasks:
        target = task.shared.accuracy_target
        searchers[task.name] = _searcher(task, target, metrics, modes)
        schedulers[task.name] = _scheduler(task, target, bulletins[task.name])
        own = [SubmodelsToStudy(journal=task.folder / JOURNAL, study_name=task.study_name, space=spec.space,
                                metrics=metrics, accuracy_target=target),
               TablesAsTrialsEnd(out_dir=task.folder, spec=task.spec, accuracy_target=target,
                                 metadata=_metadata(task.spec), ended=ended_trials)]
        if spec.search.stopping is not None or spec.search.budget_epochs is not None:
            own.append(StoppedToTensorBoard(folder=task.folder))
        callbacks += own if task.name is None else [ForTask(task.name, callback) for callback in own]
    single = tasks[0].name is None
    searcher = searchers[None] if single else TaskSearcher(searchers, {t.name: t.trials for t in tasks})
    callbacks += [TrialTensorBoard(space=spec.space), ended := RunEnded()]
    trials = sum(task.trials for task in tasks)
    if verbose:
        budget = spec.search.budget_epochs
        callbacks.append(SearchProgress(trials=trials, concurrent=spec.search.max_concurrent,
                                        budget_epochs=None if budget is None else budget * len(tasks),
                                        spent_epochs=sum(task.spent_epochs for task in tasks),
                                        accuracy_target={t.name: t.shared.accuracy_target for t in tasks},
                                        cost=cost))
    shared = tasks[0].shared if single else {task.name: task.shared for task in tasks}
    tuner = tune.Tuner(
        _trainable(spec, shared, restarts, bulletins[None] if single else bulletins),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
            scheduler=schedulers[None] if single else TaskScheduler(schedulers),
            num_samples=trials, reuse_actors=spec.search.reuse_workers,
        ),
        run_config=_run_config(spec, storage, verbose, callbacks=callbacks),
    )
    try:
        tuner.fit()
    except Exception:
        if not ended.ended:
            raise
    finally:
        for bulletin in bulletins.values():
            bulletin.close()


def run_search(
    spec: Spec | MultiTaskSpec, out_dir: str | Path, *, address: str | None = None, storage: str | None = None,
    verbose: bool = True,
) -> dict | None:
    """Search ``spec.space`` (for each task of a multi-task spec); returns the leanest feasible
    trial's row (None if none; a multi-task search: ``{task: row}``)."""
    from raytailor.preflight import check_device, check_hyperparameters, check_output
    from raytailor.run import prepare

    out_dir = Path(out_dir).resolve()
    tasks = _tasks(spec, out_dir)
    if not tasks[0].spec.space:
        raise SpecError("space is empty: a search needs at least one hyper-parameter to sample")
    if (out_dir / EXPERIMENT).exists():
        raise SpecError(f"{out_dir} already holds a search; continue it with `raytailor resume {out_dir}` "
                        "or choose another --out")
    # everything that can be refused is refused before a file is written or Ray starts
    check_output(out_dir)
    prepared = {}
    for task in tasks:
        if address is None:  # a private Ray instance: the trials run on this machine
            check_device(task.spec)
        prepared[task.name] = prepare(task.spec, device="cpu")  # data and weights, checked by loading them
        check_hyperparameters(task.spec, prepared[task.name].pretrained)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "spec.yaml").write_text(dump_spec(spec))
    location = storage_location(out_dir, storage)
    (out_dir / "search.json").write_text(json.dumps({"storage": location, "address": address}, indent=2))
    for task in tasks:
        if task.name is not None:
            task.folder.mkdir(exist_ok=True)
            (task.folder / "spec.yaml").write_text(dump_spec(task.spec))
            (task.folder / "search.json").write_text(json.dumps({TASK: task.name}, indent=2))
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # per-epoch reports carry no objectives
    _init_ray(address)
    _prepare(tasks, prepared=prepared, verbose=verbose)
    _run_trials(tasks, storage=location, verbose=verbose)
    return _finish(out_dir, tasks, verbose)


def _prepare(tasks: list[SearchTask], *, prepared: dict | None = None, verbose: bool) -> None:
    """Every task's shared data, backbone and teacher (the cached teacher, or trained now), and
    its teacher.json."""
    from raytailor.search.prepare import prepare_tasks

    shared = prepare_tasks({task.name: task.spec for task in tasks}, prepared=prepared, verbose=verbose)
    for task in tasks:
        task.shared = shared[task.name]
        if verbose:
            target, label = task.shared.accuracy_target, "" if task.name is None else f" {task.name}"
            print(f"[search{label}] accuracy target {target:.2f} % (teacher val "
                  f"{task.shared.teacher_metrics['val_accuracy']:.2f} % - {task.spec.target.max_drop:g}); "
                  + target_resolution(target, task.spec.target.max_drop, len(task.shared.arrays["val_labels"])),
                  file=sys.stderr, flush=True)
        (task.folder / "teacher.json").write_text(json.dumps(
            {**task.shared.teacher_metrics, "accuracy_target": task.shared.accuracy_target,
             "cache_key": task.shared.teacher_key}, indent=2))


def resume_search(out_dir: str | Path, *, address: str | None = None, verbose: bool = True) -> dict | None:
    """Continue an interrupted search where its folder is now (moved or copied included).

    Nothing pickled is read (Ray's ``tuner.pkl`` and the rest could run any code): the trials
    are read from their folders' JSON files, the study from the Optuna journal, early stopping's
    decisions from its record. Trials that ended (finished, stopped, failed) are kept as they
    are; an interrupted one is run again from its start with the same values (its Optuna trial
    is asked again; its folder and its early-stopping estimates are replaced); then new trials
    up to ``search.trials`` (per task)."""
    out_dir = Path(out_dir).resolve()
    if not (out_dir / "spec.yaml").is_file():
        raise SpecError(f"{out_dir} holds no search to resume (no spec.yaml); start a new search")
    if task_of(out_dir) is not None:
        raise SpecError(f"{out_dir} is task {task_of(out_dir)!r} of the multi-task search in {out_dir.parent}; "
                        f"resume that: `raytailor resume {out_dir.parent}`")
    tasks = _tasks(load_search_spec(out_dir / "spec.yaml"), out_dir)
    records = read_trials(experiment_path(out_dir))  # every task's, read once
    plans = [_resume_plan(task, records) for task in tasks]
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    _init_ray(address)
    _prepare(tasks, verbose=verbose)  # the cached teachers: nothing is retrained
    experiment = experiment_path(out_dir)
    restarts = f"{experiment}/{RESTARTS}"
    for task, (ended, interrupted, asked, study) in zip(tasks, plans):
        target = task.shared.accuracy_target
        _reconcile_study(task.folder / JOURNAL, task.study_name, task.spec, ended, target)
        kept_epochs = {}
        for record in interrupted:  # its last state waits for the trial that runs its values again
            config = record.config or _config_of(task.spec, asked.get(record.trial_id, {}), task.name)
            kept_epochs[record.trial_id] = keep_for_restart(record, restarts, restart_key(config))
            set_aside(record, experiment)
        if task.spec.search.stopping is not None and interrupted:
            _forget_estimates(task.spec, task.folder, target, kept_epochs)
        kept = {t: final_metrics(r, target) for t, r in ended.items()}  # a trial finished by its checkpoint too
        _complete_tensorboard(task, ended, kept, asked)
        task.trials = max(task.spec.search.trials - len(ended), 0)
        task.spent_epochs, task.finished_epochs = budget_epochs_kept(list(kept.values()))
        cost = leanest_cost(task.spec.objectives)
        task.kept_leanest = min((float(m[cost]) for m in kept.values() if m.get("feasible") and cost in m),
                                default=math.inf)
        # a sampler seeded as at the start would draw the values it drew then again
        task.seed = task.spec.search.seed + len(study.trials)
    if any(task.trials for task in tasks):
        _run_trials(tasks, storage=experiment_storage(out_dir), verbose=verbose, restarts=restarts)
    remove_restarts(restarts)
    return _finish(out_dir, tasks, verbose)


def _complete_tensorboard(task: SearchTask, ended: dict[str, TrialRecord], kept: dict[str, dict], asked: dict) -> None:
    """The end of every kept trial's TensorBoard run (its HParams, ``kept``: its final metrics by
    trial id, and where and why it was stopped or cut short) where the interruption came between
    the trial's end and Tune logging it (a trial finished by its checkpoint, or stopped by its
    record, with the driver gone). Trial folders on remote storage are left as they are."""
    import pyarrow.fs

    from raytailor.search.tensorboard import complete_trial_end, write_stop_marks

    for record in ended.values():
        if isinstance(record.filesystem, pyarrow.fs.LocalFileSystem):
            config = record.config or _config_of(task.spec, asked.get(record.trial_id, {}), task.name)
            complete_trial_end(Path(record.folder), config, kept[record.trial_id], task.spec.space)
            # a trial finished by its checkpoint says it was cut short in its final metrics only
            write_stop_marks(Path(record.folder), record.trial_id, task.folder,
                             {**record.metrics, **kept[record.trial_id]})


def _resume_plan(task: SearchTask, records: list[TrialRecord]
                 ) -> tuple[dict[str, TrialRecord], list[TrialRecord], dict, Any]:
    """(ended trials by id, interrupted trials, the values the study asked by trial, the study) of
    a task of a search to resume, from its journal and the search's trial ``records``."""
    import optuna

    from raytailor.search.searcher import journal_storage

    journal = task.folder / JOURNAL
    if not journal.is_file():
        raise SpecError(f"{task.folder} holds no search to resume (no {JOURNAL}); start a new search")
    study_names = optuna.get_all_study_names(journal_storage(journal))
    if len(study_names) != 1:
        raise SpecError(f"{journal} should hold one study, it holds {len(study_names)}; start a new search")
    task.study_name = study_names[0]
    study = optuna.load_study(study_name=task.study_name, storage=journal_storage(journal))
    sampled = [t for t in study.get_trials(deepcopy=False) if "submodel" not in t.user_attrs]
    told = {t.user_attrs.get("ray_trial_id") for t in sampled if t.state.is_finished()}
    asked = {t.user_attrs.get("ray_trial_id"): t.params for t in sampled}  # a folder may lack params.json
    # a trial folder whose params.json never arrived names no task: the study knows whose it is
    records = [r for r in records if task.name is None or r.config.get(TASK) == task.name
               or (not r.config and r.trial_id in asked)]
    # a trial early stopping wound up that the interruption caught before it ended with its
    # models is kept as stopped: run again, it would continue past the rung that judged it
    stopped = stopped_in(task.folder) | wound_up_in(task.folder)
    ended = {r.trial_id: r for r in records if _ended(r, stopped, told, task.spec.search.max_failures)}
    return ended, [r for r in records if r.trial_id not in ended], asked, study


def _config_of(spec: Spec, params: dict[str, Any], task: str | None = None) -> dict[str, Any]:
    """The Tune config a trial with these Optuna ``params`` got (the searcher adds the values
    of inactive conditional entries, a multi-task search the task), for a trial folder whose
    params.json never arrived."""
    import optuna

    named = {} if task is None else {TASK: task}
    try:
        return {**params, **_space(spec)(optuna.trial.FixedTrial(params)), **named}
    except ValueError:  # values the space no longer holds
        return {**params, **named}


def _ended(record: TrialRecord, stopped: dict, told: set[str], max_failures: int) -> bool:
    """A resume keeps the trial: it ran to its end (its final report, or its checkpoint, which
    comes with the final report only), failed by itself or more often than Tune retries, early
    stopping ended it, or the study was told how it ended (the driver can die before Tune copies
    a trial's last reports into its folder)."""
    from raytailor.search.trainable import FAILED, is_finished

    return (is_finished(record.metrics) or bool(record.saved_result()) or FAILED in record.metrics
            or record.failures > max_failures or record.trial_id in stopped or record.trial_id in told)


def budget_epochs_kept(kept: list[dict[str, Any]]) -> tuple[int, list[int]]:
    """What the trials a resume keeps spent (their training epochs together) and, for a budget
    to learn from, the epochs of each that ran to its end (not cut short); ``kept``: their final metrics
    (``results.final_metrics``: a trial finished by its checkpoint counts as finished)."""
    spent = sum(int(m.get(EPOCHS) or 0) for m in kept)
    return spent, [int(m.get(EPOCHS) or 0) for m in kept if ran_to_its_end(m)]


def _reconcile_study(journal: Path, study_name: str, spec: Spec, ended: dict[str, TrialRecord],
                     accuracy_target: float) -> None:
    """Bring the study up to the trial folders: a trial that ended after the study last heard of
    it (the driver was killed) is told now, with its sub-models; a trial still RUNNING in the
    study whose Ray trial never ended goes back to WAITING, so the next trial asked runs its
    values again."""
    import optuna

    from raytailor.search.results import checkpoint_submodels
    from raytailor.search.searcher import add_submodel_trials, journal_storage, tell_outcome
    from raytailor.search.trainable import is_finished

    storage = journal_storage(journal)
    study = optuna.load_study(study_name=study_name, storage=storage)
    metrics, _ = _objective_metrics(spec)
    trials = study.get_trials(deepcopy=False)
    with_submodels = {t.user_attrs.get("ray_trial_id") for t in trials if "submodel" in t.user_attrs}
    for frozen in trials:
        ray_id = frozen.user_attrs.get("ray_trial_id")
        if "submodel" in frozen.user_attrs or frozen.state != optuna.trial.TrialState.RUNNING:
            continue
        record = ended.get(ray_id)
        if record is None:
            storage.set_trial_state_values(frozen._trial_id, state=optuna.trial.TrialState.WAITING)
            continue
        final = final_metrics(record, accuracy_target)
        tell_outcome(study, optuna.trial.Trial(study, frozen._trial_id), final,
                     error=record.error is not None and not is_finished(final), metrics=metrics,
                     accuracy_target=accuracy_target)
    for trial_id, record in ended.items():
        if trial_id in with_submodels or record.checkpoint is None:
            continue
        submodels = checkpoint_submodels(record.saved_result())
        if submodels:
            add_submodel_trials(study, space=spec.space, config=record.config, records=submodels, metrics=metrics,
                                accuracy_target=accuracy_target, trial_id=trial_id)


def _forget_estimates(spec: Spec, out_dir: Path, accuracy_target: float, kept_epochs: dict[str, int]) -> None:
    """Early stopping forgets what interrupted trials estimated after the state a resume keeps
    for them (their new trials estimate it again); what they estimated before stays."""
    from raytailor.search.early_stopping import EarlyStopping

    EarlyStopping(record=out_dir / RECORD_FILE, **_stopping_rules(spec, accuracy_target)).forget(kept_epochs)


def _finish(out_dir: Path, tasks: list[SearchTask], verbose: bool) -> dict | None:
    """Every task's outputs (tables, plot, models, summary); a multi-task search's combined
    summary. Returns the leanest feasible row (a multi-task search: ``{task: row}``)."""
    leanest = {}
    for task in tasks:
        _, rows, checkpoints = search_rows(task.folder, task.spec, task.shared.accuracy_target)
        leanest[task.name] = write_outputs(task.folder, rows, checkpoints, task.spec, task.shared.teacher_metrics,
                                           _metadata(task.spec), verbose)
    if tasks[0].name is None:
        return leanest[None]
    write_combined_summary(out_dir, [task.name for task in tasks],
                           object_store_bytes=serialized_bytes({task.name: task.shared for task in tasks}),
                           separate_bytes=sum(serialized_bytes(task.shared) for task in tasks), verbose=verbose)
    return leanest
