"""What a running search shows on the terminal: per trial, where it is and what it would produce.

Replaces Tune's own progress table (which shows ``iter``, ``total time`` and whatever keys the
last report had, and points to a TensorBoard folder of its own). On a terminal, a table is
printed every ``interval`` seconds:

    [search] 3/8 done (1 stopped), 2 running, 3 to go; leanest feasible 5,124,736 MACs (a1b2c3d4); ~2 min left
      trial     status   stage        epochs  val acc          MACs  feasible
      a1b2c3d4  done     finetune         24    98.60     5,124,736  yes
      e5f6a7b8  running  student           3    81.82     9,646,720  no

Elsewhere (CI logs, a file), one line per event: a trial starts, enters a stage, ends.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from ray import tune

from raytailor.search.location import TASK
from raytailor.search.trainable import EPOCHS, ESTIMATE, FAILED, FINISHED


@dataclass
class TrialLine:
    status: str = "running"          # running | done | stopped | failed
    stage: str = "-"
    epochs: int = 0                  # training epochs so far
    accuracy: float | None = None    # the estimate so far, the final validation accuracy at the end
    cost: float | None = None
    started: float = 0.0
    ended: float | None = None
    task: str | None = None          # a multi-task search: the trial's task


def stage_of(result: dict[str, Any]) -> str | None:
    """The stage a per-epoch report belongs to (its keys are ``<stage>/<metric>``)."""
    stages = {key.split("/", 1)[0] for key in result if "/" in key}
    stages -= {ESTIMATE, "sampled", "config"}
    return min(stages) if stages else None


class SearchProgress(tune.Callback):
    def __init__(self, *, trials: int, concurrent: int, accuracy_target: float | dict[str | None, float],
                 cost: str = "macs", interval: float = 15.0, stream: TextIO | None = None,
                 plain: bool | None = None, budget_epochs: int | None = None, spent_epochs: int = 0) -> None:
        """``accuracy_target``: the search's, or a multi-task search's by task; ``budget_epochs``:
        the training epochs all trials may spend (every task's), of which ``spent_epochs`` were
        spent by trials a resumed search kept."""
        self.total, self.concurrent = trials, concurrent
        self.budget, self.spent_before = budget_epochs, spent_epochs
        self.targets = accuracy_target if isinstance(accuracy_target, dict) else {None: accuracy_target}
        self.cost = cost
        self.interval = interval
        self.stream = stream
        self.plain = plain
        self.lines: dict[str, TrialLine] = {}
        self._shown = 0.0

    # ---- Tune callback hooks -------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.lines[trial.trial_id] = TrialLine(started=time.monotonic(), task=trial.config.get(TASK))
        self._event(f"{trial.trial_id} started")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        line = self.lines.setdefault(trial.trial_id, TrialLine(started=time.monotonic(), task=trial.config.get(TASK)))
        stage = stage_of(result)
        if stage is not None and stage != line.stage and not result.get(FINISHED):
            line.stage = stage
            self._event(f"{trial.trial_id} {stage}")
        line.epochs = int(result.get(EPOCHS, line.epochs))
        if f"{ESTIMATE}/val_accuracy" in result:
            line.accuracy = float(result[f"{ESTIMATE}/val_accuracy"])
            line.cost = float(result.get(f"{ESTIMATE}/{self.cost}", line.cost or 0.0))
        if result.get(FINISHED):
            line.accuracy, line.cost = float(result["val_accuracy"]), float(result[self.cost])
        if result.get(FAILED):
            line.status = "failed"

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        line = self.lines.setdefault(trial.trial_id, TrialLine())
        last = trial.last_result or {}
        line.status = "failed" if last.get(FAILED) else "done" if last.get(FINISHED) else "stopped"
        line.ended = time.monotonic()
        self._event(f"{trial.trial_id} {line.status}" + (
            f": val {line.accuracy:.2f}%, {self.cost} {line.cost:,.0f}" if line.status == "done" else ""))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        line = self.lines.setdefault(trial.trial_id, TrialLine())
        line.status, line.ended = "failed", time.monotonic()
        self._event(f"{trial.trial_id} failed")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._plain() and time.monotonic() - self._shown >= self.interval:
            self._shown = time.monotonic()
            self._write(self.table())

    # ---- what is shown -------------------------------------------------------------------
    def summary(self) -> str:
        ended = [line for line in self.lines.values() if line.status != "running"]
        stopped = sum(line.status == "stopped" for line in ended)
        failed = sum(line.status == "failed" for line in ended)
        running = len(self.lines) - len(ended)
        to_go = max(self.total - len(self.lines), 0)
        text = (f"[search] {len(ended)}/{self.total} done"
                + (f" ({stopped} stopped" + (f", {failed} failed)" if failed else ")") if stopped or failed else "")
                + f", {running} running, {to_go} to go")
        if self.budget is not None:
            spent = self.spent_before + sum(line.epochs for line in self.lines.values())
            text += f"; {spent:,}/{self.budget:,} epochs of the budget"
        for task in self.targets:
            feasible = [(line.cost, trial) for trial, line in self.lines.items() if line.status == "done"
                        and line.task == task and self._feasible(line)]
            if feasible:
                cost, trial = min(feasible)
                text += f"; {'' if task is None else f'{task}: '}leanest feasible {cost:,.0f} {self._label()} ({trial})"
        durations = [line.ended - line.started for line in ended if line.ended is not None]
        if durations and (running or to_go):
            left = sum(durations) / len(durations) * (running / 2 + to_go) / max(self.concurrent, 1)
            text += f"; ~{left / 60:.0f} min left" if left >= 60 else f"; ~{left:.0f} s left"
        return text

    def table(self) -> str:
        tasks = "" if list(self.targets) == [None] else f"{'task':<13}"
        rows = [f"  {tasks}{'trial':<9} {'status':<8} {'stage':<12} {'epochs':>6}  {'val acc':>7}  "
                f"{self._label():>12}  feasible"]
        for trial, line in self.lines.items():
            accuracy = f"{line.accuracy:7.2f}" if line.accuracy is not None else f"{'-':>7}"
            cost = f"{line.cost:12,.0f}" if line.cost is not None else f"{'-':>12}"
            feasible = "-" if line.accuracy is None else "yes" if self._feasible(line) else "no"
            task = "" if line.task is None else f"{line.task[:12]:<13}"
            rows.append(f"  {task}{trial:<9} {line.status:<8} {line.stage[:12]:<12} {line.epochs:>6}  {accuracy}  {cost}  "
                        f"{feasible}")
        return "\n".join([self.summary(), *rows])

    def _feasible(self, line: TrialLine) -> bool:
        return line.accuracy is not None and line.accuracy >= self.targets.get(line.task, float("inf"))

    def _label(self) -> str:
        return "MACs" if self.cost == "macs" else self.cost

    # ---- output --------------------------------------------------------------------------
    def _plain(self) -> bool:
        if self.plain is None:
            stream = self.stream or sys.stderr
            return not (hasattr(stream, "isatty") and stream.isatty())
        return self.plain

    def _event(self, text: str) -> None:
        if self._plain():
            self._write(f"{self.summary()} | {text}")

    def _write(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def __getstate__(self) -> dict:  # pickled with the experiment: no stream, a fresh view
        return {**self.__dict__, "stream": None, "lines": {}}
