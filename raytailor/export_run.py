"""Find the exported model of a tailor run or of one search trial (``raytailor export``)."""

from __future__ import annotations

import json
from pathlib import Path

from raytailor.errors import ExportError
from raytailor.export import read_architecture
from raytailor.pareto import leanest, leanest_cost, submodel_id
from raytailor.trials_table import SUBMODELS_FILE, TRIALS_FILE, model_rows
from raytailor.run import submodel_dir


def find_model(run_dir: Path, trial: str = "leanest") -> tuple[Path, Path | None]:
    """(model folder with architecture.json + weights.safetensors, its result.json if any).

    ``trial``: for a search, a row's trial_id (a TransTailor sub-model is ``<trial>-it<k>``) or
    ``leanest``; for a tailor run, ``leanest`` (the chosen model) or ``it<k>`` (a kept sub-model)."""
    if (run_dir / "result.json").is_file() and (run_dir / "model").is_dir():  # a `tailor` run
        return _tailor_run_model(run_dir, trial)
    if not (run_dir / TRIALS_FILE).is_file():
        from raytailor.search.location import task_folders_hint

        raise ExportError(f"{str(run_dir)!r} is neither a tailor run (result.json) nor a search ({TRIALS_FILE})"
                          + task_folders_hint(run_dir))
    models = model_rows(run_dir)
    if trial == "leanest":
        best = leanest(models, cost=_leanest_cost(run_dir))
        if best is None:
            raise ExportError(f"no trial in {run_dir} met the accuracy target; pass --trial ID")
        trial = best["trial_id"]
    by_id = {r["trial_id"]: r for r in models}
    for row in models:  # a TransTailor trial id stands for the sub-model it chose
        chosen_id = submodel_id(trial, row["submodel"]) if row.get("submodel") is not None else None
        if row.get("chosen") and row["trial_id"] == chosen_id:
            trial = chosen_id
    if trial not in by_id:
        raise ExportError(f"{trial!r} is not a trial or sub-model of {run_dir}; see the trial_id column of "
                          f"{TRIALS_FILE} / {SUBMODELS_FILE}")
    if (run_dir / "models" / trial / "architecture.json").is_file():
        result = run_dir / "models" / trial / "result.json"
        return run_dir / "models" / trial, result if result.is_file() else None
    row = by_id[trial]
    tune_trial, inside = trial, Path(".")
    if row.get("submodel") is not None:
        tune_trial = trial.removesuffix(f"-it{row['submodel']}")
        inside = submodel_dir(Path("."), row["submodel"], chosen=bool(row.get("chosen")))
    from raytailor.search.location import experiment_path

    # a task folder of a multi-task search: its trials are in the search's experiment
    checkpoints = sorted(Path(experiment_path(run_dir)).glob(f"*{tune_trial}*/checkpoint_*"))
    if not checkpoints or not (checkpoints[-1] / "model").is_dir():
        raise ExportError(f"trial {trial!r} finished without a model (it failed); pick another trial")
    folder = checkpoints[-1] / inside
    if not (folder / "model").is_dir():
        raise ExportError(f"sub-model {trial!r} was not kept: another sub-model of its trial dominates it or it "
                          "missed the accuracy target; export one on the front")
    return folder / "model", folder / "result.json"


def _leanest_cost(run_dir: Path) -> str:
    """The cost the search itself picked its leanest model by: the spec's first cost objective."""
    import yaml

    spec = run_dir / "spec.yaml"
    return leanest_cost((yaml.safe_load(spec.read_text()) or {}).get("objectives", []) if spec.is_file() else [])


def _tailor_run_model(run_dir: Path, which: str) -> tuple[Path, Path]:
    result = json.loads((run_dir / "result.json").read_text())
    chosen = result.get("chosen_submodel", result.get("chosen_iteration"))  # the latter: older runs
    if which == "leanest" or (chosen is not None and which == f"it{chosen}"):
        read_architecture(run_dir / "model")
        return run_dir / "model", run_dir / "result.json"
    kept = sorted(p.name for p in (run_dir / "submodels").glob("it*"))
    folder = run_dir / "submodels" / which
    if which not in kept:
        chain = [f"it{r['submodel']}" for r in result.get("submodels", result.get("chain", []))]
        choices = f"(kept: {', '.join(kept + [f'it{chosen}'] if chosen is not None else kept) or 'none'}, " \
                  "or leanest for the chosen model)"
        if which in chain:
            raise ExportError(f"sub-model {which!r} of {run_dir} was not kept: another sub-model of the run "
                              f"dominates it or it missed the accuracy target {choices}")
        raise ExportError(f"{which!r} is not a sub-model of {run_dir}; it has {', '.join(chain) or 'none'} "
                          f"{choices}")
    read_architecture(folder / "model")
    return folder / "model", folder / "result.json"
