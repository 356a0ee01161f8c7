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
        if len(records or []) < 2:
            return
        study = optuna.load_study(study_name=self.study_name, storage=journal_storage(self.journal))
        add_submodel_trials(study, space=self.space, config=trial.config, records=records, metrics=self.metrics,
                            accuracy_target=self.accuracy_target, trial_id=trial.trial_id)


class StoppedToTensorBoard(tune.Callback):
    """When early stopping ends a trial, put where and why into that trial's TensorBoard run:
    the scalar ``early_stopping/stopped_at_epoch`` and the reason as text."""

    def __init__(self, *, record: Path) -> None:
        self.record = Path(record)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from raytailor.search.early_stopping import stopped_trials

        stop = stopped_trials(self.record).get(trial.trial_id)
        if stop is None or not trial.local_path:
            return
        with SummaryWriter(trial.local_path, filename_suffix=".early_stopping") as writer:
            writer.add_scalar("early_stopping/stopped_at_epoch", stop.epochs, global_step=stop.epochs)
            writer.add_text("early_stopping/reason", stop.reason, global_step=stop.epochs)
