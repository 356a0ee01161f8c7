"""Tune callbacks: side effects of a search that belong to no single trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import tune


class SubmodelsToStudy(tune.Callback):
    """When a trial finishes, tell the Optuna study about every sub-model that stands for other
    sampled values than the trial's own (``searcher.add_submodel_trials``): one trained NetTailor
    student gives the sampler a point per distinct pruning, not one per trial.

    Holds only paths and plain values (Tune pickles it with the experiment; nothing reads that back)."""

    def __init__(self, *, journal: Path, study_name: str, space: dict, metrics: list[str],
                 accuracy_target: float) -> None:
        self.journal, self.study_name, self.space = Path(journal), study_name, space
        self.metrics, self.accuracy_target = list(metrics), accuracy_target

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        import optuna

        from raytailor.search.results import checkpoint_submodels
        from raytailor.search.searcher import add_submodel_trials, journal_storage

        if trial.checkpoint is None:
            return
        import json

        with trial.checkpoint.as_directory() as folder:
            saved = Path(folder) / "result.json"
            records = checkpoint_submodels(json.loads(saved.read_text())) if saved.is_file() else None
        if not records:  # one left of a grid fine-tuned by cost may be another pruning than the trial's own
            return
        study = optuna.load_study(study_name=self.study_name, storage=journal_storage(self.journal))
        add_submodel_trials(study, space=self.space, config=trial.config, records=records, metrics=self.metrics,
                            accuracy_target=self.accuracy_target, trial_id=trial.trial_id)


class StoppedToTensorBoard(tune.Callback):
    """When early stopping or the budget ends a trial, put where and why into that trial's
    TensorBoard run (``tensorboard.write_stop_marks``). ``folder``: the search's (task's)
    folder, which holds the records of both."""

    def __init__(self, *, folder: Path) -> None:
        self.folder = Path(folder)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from raytailor.search.tensorboard import write_stop_marks

        if trial.local_path:
            write_stop_marks(Path(trial.local_path), trial.trial_id, self.folder,
                             getattr(trial, "last_result", None) or {})


class TablesAsTrialsEnd(tune.Callback):
    """Each time a trial ends, write trials.parquet, submodels.parquet and pareto.parquet again
    from the trial folders, so a search that cannot finish (a full disk, a lost driver) leaves
    tables of every trial that ended before; the end of the search writes them (and the plot,
    summary and models) once more. A table that cannot be written keeps its previous version and
    the search goes on: its end says what could not be written.

    Trials that ended are read once (their folders no longer change), so a search of n trials
    lists its experiment n times, not n^2 folders."""

    def __init__(self, *, out_dir: Path, spec: Any, accuracy_target: float, metadata: dict[str, str],
                 ended: dict | None = None) -> None:
        self.out_dir, self.spec, self.accuracy_target = Path(out_dir), spec, accuracy_target
        self.metadata = dict(metadata)
        # folder -> TrialRecord of trials that ended; the tasks of a multi-task search share one
        self._ended: dict[str, Any] = {} if ended is None else ended

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial.trial_id)

    def _write(self, ended: str) -> None:
        from raytailor.pareto import mark_front
        from raytailor.search.results import search_rows, write_tables

        records, rows, _ = search_rows(self.out_dir, self.spec, self.accuracy_target, known=self._ended)
        self._ended.update({r.folder: r for r in records if r.trial_id == ended})
        try:
            write_tables(self.out_dir, mark_front(rows, self.spec.objectives), self.spec, self.metadata)
        except OSError:
            pass  # the previous tables stay; the search's end reports what it cannot write


class RunEnded(tune.Callback):
    """Knows whether Tune's run loop ended (every trial done or the run stopped)."""

    def __init__(self) -> None:
        self.ended = False

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.ended = True
