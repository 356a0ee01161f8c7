"""TensorBoard for every trial, written the way users read it.

Replaces Tune's own TensorBoard logger (being a ``TBXLoggerCallback``, Tune adds no other):

- scalars under the names the trial reported (``student/loss``, ``finetune/val_accuracy``,
  ``estimate/macs``, ...; no ``ray/tune/`` prefix), stepped by training epochs, and none of
  Tune's bookkeeping (``done``, ``time_this_iter_s``, ``iterations_since_restore``, ...);
- HParams: the sampled hyper-parameters (integers stay integers: each integer range or choice
  list is a discrete domain of its values as text, which TensorBoard shows as written; a number
  would show as ``4.0000``) against the run's own metrics, objectives and ``feasible`` first so
  that the default view shows them, each metric's value written as a scalar of its tag. Every trial logs the same metrics: a trial early
  stopping ended shows its last estimate (as the tables do), infeasible; an unknown value is NaN.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ray.tune.logger import TBXLoggerCallback

from raytailor.search.trainable import BEST_VAL_ACCURACY, EPOCHS, ESTIMATE, FINISHED, is_finished

# the HParams metrics, in the order the HParams table shows them
HPARAM_METRICS = ("val_accuracy", "macs", "feasible", "params", "task_params", "test_accuracy",
                  BEST_VAL_ACCURACY, EPOCHS)


def scalars_of(result: dict[str, Any]) -> dict[str, float]:
    """The trial's own per-epoch values: its namespaced metrics (``stage/name``) and ``epochs``."""
    return {key: float(value) for key, value in result.items()
            if ("/" in key and not key.startswith("config/") or key == EPOCHS)
            and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def hparam_metrics(last: dict[str, Any]) -> dict[str, float]:
    """The HParams metrics of a trial from its last report, NaN where unknown."""
    values = dict(last)
    if not last.get(FINISHED):  # stopped (or failed): the last estimate, never feasible
        values = {**{k: last.get(f"{ESTIMATE}/{k}") for k in ("val_accuracy", "macs", "params", "task_params")},
                  EPOCHS: last.get(EPOCHS), "feasible": False}
    return {key: float(values[key]) if isinstance(values.get(key), (int, float)) else math.nan
            for key in HPARAM_METRICS}


def discrete_domains(space: dict) -> dict[str, list]:
    """HParams domains that keep integers integers: choices, and every value of an integer range."""
    domains = {}
    for name, param in space.items():
        if param.choices is not None:
            domains[name] = list(param.choices)
        elif isinstance(param.low, int) and isinstance(param.high, int) and param.high - param.low <= 1000:
            domains[name] = list(range(param.low, param.high + 1, int(param.step or 1)))
    return domains


def _shown(value: Any) -> Any:
    """An integer as the text TensorBoard shows as it is (a number shows as ``4.0000``)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TrialTensorBoard(TBXLoggerCallback):
    """Holds only the space (plain values): it is pickled with the experiment."""

    def __init__(self, *, space: dict) -> None:
        self.space = space
        self._writers: dict[Any, Any] = {}
        self._last: dict[Any, dict] = {}

    def log_trial_start(self, trial: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if trial in self._writers:
            self._writers[trial].close()
        trial.init_local_path()
        self._writers[trial] = SummaryWriter(trial.local_path, flush_secs=30)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        if trial not in self._writers:
            self.log_trial_start(trial)
        writer = self._writers[trial]
        step = int(result.get(EPOCHS) or result.get("training_iteration") or 0)
        for key, value in scalars_of(result).items():
            writer.add_scalar(key, value, global_step=step)
        self._last[trial] = result
        writer.flush()

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        writer = self._writers.pop(trial, None)
        if writer is None:
            return
        write_trial_end(writer, trial.evaluated_params or {}, self._last.pop(trial, {}), self.space)
        writer.close()

    def __getstate__(self) -> dict:
        return {"space": self.space, "_writers": {}, "_last": {}}


def write_trial_end(writer: Any, params: dict[str, Any], last: dict[str, Any], space: dict) -> None:
    """The end of a trial's run: each HParams metric as a scalar of its tag (the HParams table
    reads a metric's value from it) and the HParams summary of its sampled ``params``."""
    metrics = hparam_metrics(last)
    step = int(last.get(EPOCHS) or 0)
    for key, value in metrics.items():
        if key != EPOCHS and math.isfinite(value):  # epochs: already a per-epoch scalar
            writer.add_scalar(key, value, global_step=step)
    shown = {name: _shown(value) for name, value in params.items() if isinstance(value, (int, float, str, bool))}
    if shown:
        from torch.utils.tensorboard.summary import hparams

        domains = {k: [_shown(v) for v in values] for k, values in discrete_domains(space).items() if k in shown}
        for summary in hparams(shown, metrics, hparam_domain_discrete=domains):
            writer.file_writer.add_summary(summary)


_HPARAMS_PLUGIN = b"\n\x07hparams"  # how an events file names the HParams plugin (PluginData.plugin_name)


def complete_trial_end(folder: Path, params: dict[str, Any], last: dict[str, Any], space: dict) -> bool:
    """Write the end of a kept trial's run where the driver never logged it (it was stopped
    between the trial's end and Tune's callbacks: a resume keeps the trial, finished by its
    checkpoint or stopped by its record), in an events file of its own; False where the folder
    already has it. ``folder``: the trial's local folder."""
    if any(_HPARAMS_PLUGIN in events.read_bytes() for events in folder.glob("events.out.tfevents.*")):
        return False
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder), filename_suffix=".resumed") as writer:
        write_trial_end(writer, params, last, space)
    return True


def write_stop_marks(folder: Path, trial_id: str, records: Path, last: dict[str, Any]) -> None:
    """Put where and why early stopping or the budget ended trial ``trial_id`` into its run in
    ``folder`` (its local trial folder): the scalar ``early_stopping/stopped_at_epoch`` and the
    reason as text; for a trial that ended with the models it had ready (``last``: its last
    result), the text ``budget/cut_short`` (the budget was spent) or ``early_stopping/cut_short``
    (early stopping's call). ``records``: the search's (task's) folder, which holds the records
    of both. A mark the run already has is not written again, so a resume completes what an
    interruption between a trial's end and Tune's callbacks left out."""
    from torch.utils.tensorboard import SummaryWriter

    from raytailor.methods import CUT_SHORT
    from raytailor.search.results import cut_short_reason, stopped_in, wound_up_in

    def marked(kind: str) -> bool:
        return any(folder.glob(f"events.out.tfevents.*.{kind}"))

    stop = stopped_in(records).get(trial_id)
    judged = wound_up_in(records).get(trial_id)  # early stopping's call
    if stop is None and judged is not None and not is_finished(last):
        stop = judged  # wound up, then interrupted before it ended with its models: kept as stopped
    # a trial needs one kind at most (stopped, or cut short), so both may use ".early_stopping"
    if stop is None and last.get(CUT_SHORT):
        kind = "budget" if judged is None else "early_stopping"
        if not marked(kind):
            with SummaryWriter(str(folder), filename_suffix=f".{kind}") as writer:
                writer.add_text(f"{kind}/cut_short", cut_short_reason(judged), global_step=int(last.get(EPOCHS, 0)))
    if stop is not None and not marked("early_stopping"):
        with SummaryWriter(str(folder), filename_suffix=".early_stopping") as writer:
            writer.add_scalar("early_stopping/stopped_at_epoch", stop.epochs, global_step=stop.epochs)
            writer.add_text("early_stopping/reason", stop.reason, global_step=stop.epochs)
