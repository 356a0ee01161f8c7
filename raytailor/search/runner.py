"""Run, and resume, a search: the only place that drives Ray Tune.

Output folder (``--out``): spec.yaml, teacher.json, optuna.journal (the study), trials/ (Ray's
experiment: one folder per trial with TensorBoard events), trials.parquet, submodels.parquet,
pareto.parquet, pareto.png, models/<id>/, summary.json, early_stopping.json (its decisions).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import yaml

from raytailor.errors import SpecError
from raytailor.run import dump_spec
from raytailor.search.early_stopping import RECORD_FILE, stopped_trials
from raytailor.search.location import EXPERIMENT, experiment_path, search_folder, storage_location
from raytailor.search.results import rows_from_results, write_outputs
from raytailor.search.space import DefineByRun
from raytailor.spec import Spec, load_resolved_spec



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


def _init_ray(address: str | None) -> None:
    """Join ``address`` if one was given, else start a private Ray instance.

    ``ray.init()`` with no address attaches to any Ray already running on the machine (another
    search, a test suite) through ``/tmp/ray/ray_current_cluster`` or ``RAY_ADDRESS``; when that
    one ends, every trial of this search dies. ``"local"`` always starts a new instance and
    ignores both. ``--address auto`` still joins the running cluster on purpose."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 configure_logging=True, logging_level="ERROR")


def _trainable(spec: Spec, shared: Any):
    from ray import tune

    from raytailor.search.trainable import tailoring_trial

    resources = spec.search.resources
    return tune.with_resources(tune.with_parameters(tailoring_trial, shared=shared),
                               {"cpu": resources.cpu, "gpu": resources.gpu})


def _scheduler(spec: Spec, out_dir: Path, accuracy_target: float):
    """Early stopping (``search.early_stopping``), or Tune's first-in first-out without it."""
    from ray.tune.schedulers import FIFOScheduler

    from raytailor.search.scheduler import ConstrainedEarlyStopping

    settings = spec.search.stopping
    if settings is None:
        return FIFOScheduler()
    costs = [objective for objective in spec.objectives if objective != "accuracy"]
    return ConstrainedEarlyStopping(record=out_dir / RECORD_FILE, costs=costs, accuracy_target=accuracy_target,
                                    **dataclasses.asdict(settings))


def _run_config(spec: Spec, storage: str, verbose: bool, callbacks: list | None = None):
    from ray import tune

    # Tune's own output stays off: raytailor's progress callback shows the search (search/progress.py)
    return tune.RunConfig(name=EXPERIMENT, storage_path=storage, verbose=0, callbacks=callbacks,
                          failure_config=tune.FailureConfig(max_failures=spec.search.max_failures))


def run_search(
    spec: Spec, out_dir: str | Path, *, address: str | None = None, storage: str | None = None,
    verbose: bool = True,
) -> dict | None:
    """Search ``spec.space``; returns the leanest feasible trial's row (None if none)."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from raytailor.preflight import check_device, check_hyperparameters, check_output
    from raytailor.run import prepare
    from raytailor.search.callbacks import StoppedToTensorBoard, SubmodelsToStudy
    from raytailor.search.prepare import prepare_shared
    from raytailor.search.searcher import ConstrainedOptunaSearch, make_sampler
    from raytailor.pareto import leanest_cost
    from raytailor.search.progress import SearchProgress
    from raytailor.search.tensorboard import TrialTensorBoard

    if not spec.space:
        raise SpecError("space is empty: a search needs at least one hyper-parameter to sample")
    out_dir = Path(out_dir).resolve()
    if (out_dir / EXPERIMENT).exists():
        raise SpecError(f"{out_dir} already holds a search; continue it with `raytailor resume {out_dir}` "
                        "or choose another --out")
    # everything that can be refused is refused before a file is written or Ray starts
    check_output(out_dir)
    if address is None:  # a private Ray instance: the trials run on this machine
        check_device(spec)
    prepared = prepare(spec, device="cpu")  # data and weights, checked by loading them
    check_hyperparameters(spec, prepared.pretrained)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "spec.yaml").write_text(dump_spec(spec))
    location = storage_location(out_dir, storage)
    (out_dir / "search.json").write_text(json.dumps({"storage": location, "address": address}, indent=2))
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"  # per-epoch reports carry no objectives
    _init_ray(address)
    shared = prepare_shared(spec, prepared=prepared, verbose=verbose)
    (out_dir / "teacher.json").write_text(json.dumps(
        {**shared.teacher_metrics, "accuracy_target": shared.accuracy_target,
         "cache_key": shared.teacher_key}, indent=2))
    metrics, modes = _objective_metrics(spec)
    defaults = {f.name: f.default for f in dataclasses.fields(type(spec.method_config()))}
    defaults |= spec.fixed
    searcher = ConstrainedOptunaSearch(
        space=DefineByRun(spec.space, defaults), metric=metrics, mode=modes,
        sampler=make_sampler(spec.search.sampler, spec.search.seed, spec.search.trials), study_name=out_dir.name,
        accuracy_target=shared.accuracy_target, storage_path=out_dir / "optuna.journal",
    )
    callbacks = [SubmodelsToStudy(journal=out_dir / "optuna.journal", study_name=out_dir.name, space=spec.space,
                                  metrics=metrics, accuracy_target=shared.accuracy_target),
                 TrialTensorBoard(space=spec.space)]
    if verbose:
        callbacks.append(SearchProgress(trials=spec.search.trials, concurrent=spec.search.max_concurrent,
                                        accuracy_target=shared.accuracy_target,
                                        cost=leanest_cost(spec.objectives)))
    if spec.search.stopping is not None:
        callbacks.append(StoppedToTensorBoard(record=out_dir / RECORD_FILE))
    tuner = tune.Tuner(
        _trainable(spec, shared),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
            scheduler=_scheduler(spec, out_dir, shared.accuracy_target),
            num_samples=spec.search.trials, reuse_actors=spec.search.reuse_workers,
        ),
        run_config=_run_config(spec, location, verbose, callbacks=callbacks),
    )
    with search_folder(out_dir):
        results = tuner.fit()
        return _finish(out_dir, spec, results, shared, verbose)


def resume_search(out_dir: str | Path, *, address: str | None = None, verbose: bool = True) -> dict | None:
    """Continue an interrupted search: finished trials are kept, unfinished ones run again."""
    from ray import tune

    from raytailor.search.prepare import prepare_shared

    out_dir = Path(out_dir).resolve()
    spec = load_resolved_spec(out_dir / "spec.yaml")
    experiment = experiment_path(out_dir)
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    _init_ray(address)
    if not tune.Tuner.can_restore(experiment):
        raise SpecError(f"{out_dir} has no restorable search state in {experiment}; start a new search")
    shared = prepare_shared(spec, verbose=verbose)  # the cached teacher: nothing is retrained
    with search_folder(out_dir):  # the pickled scheduler, callbacks and searcher use this folder's files
        tuner = tune.Tuner.restore(experiment, trainable=_trainable(spec, shared),
                                   resume_unfinished=True, resume_errored=False, restart_errored=False)
        results = tuner.fit()
        return _finish(out_dir, spec, results, shared, verbose)


def _finish(out_dir: Path, spec: Spec, results: Any, shared: Any, verbose: bool) -> dict | None:
    rows, checkpoints = rows_from_results(results, spec, shared.accuracy_target, stopped=stopped_trials(out_dir / RECORD_FILE))
    return write_outputs(out_dir, rows, checkpoints, spec, shared.teacher_metrics, _metadata(spec), verbose)


