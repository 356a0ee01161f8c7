"""What a search tells its running trials while they run: the cost of the leanest feasible
model it holds, and whether its budget is spent.

A model that costs more than one the search already holds (feasible, saved) cannot be the
search's leanest feasible model, and one that costs more than the teacher (which meets the
target by definition) is of no use at all. A method that can leave out work on such models
(NetTailor's ``finetune_prunings: leanest_first``, ``leanest_up`` or ``bisect``: the prunings it
would fine-tune past its first) reads this bound through ``methods.Goal.leaner_than`` before each costly step. Each
trial offers its own chosen model's cost once it is feasible and saved (its final report
returned, so a bound never stands for a model that was lost).

Once the search's budget (``search.budget_epochs``) is spent, the scheduler posts it here, and
a trial with candidates ready (a NetTailor student with a pruning fine-tuned, a TransTailor
chain with a step done) ends with them (``methods.Goal.go_on``) instead of being stopped with
nothing to show; so does such a trial that early stopping would stop (the scheduler posts that
trial wound up).

One small Ray actor per task holds both: seeded with the teacher's cost and, on resume, with
that of the kept trials' models. Trials that run side by side learn of each other's models as
they go. The actor is placed on the driver's node and keeps what it was told in a small JSON
file there, so that if its process dies Ray starts it again with what it held (calls made
meanwhile wait for it); the driver ends it after the trials (``close``). If its node dies, Ray
starts it elsewhere with only its seed; if it cannot be reached at all, a trial falls back to
the seed and goes on (the scheduler stops it at the budget as it would any other).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import uuid
from pathlib import Path

import ray


class _Board:
    """The actor's state, kept in a file on its node named by ``token`` (read back when Ray
    starts the actor again: with the same arguments, on the same node)."""

    def __init__(self, cost: float, token: str) -> None:
        self.state = Path(tempfile.gettempdir()) / f"raytailor-bulletin-{token}.json"
        self.cost, self.spent, self.wound_up = cost, False, set()
        self.closed = False
        if self.state.is_file():  # started again after its process died
            saved = json.loads(self.state.read_text())
            self.cost, self.spent, self.wound_up = saved["cost"], saved["spent"], set(saved["wound_up"])

    def offer(self, cost: float) -> None:
        if math.isfinite(cost) and cost < self.cost:
            self.cost = cost
            self._save()

    def least(self) -> float:
        return self.cost

    def spend(self) -> None:
        self.spent = True
        self._save()

    def wind_up(self, trial: str) -> None:
        self.wound_up.add(trial)
        self._save()

    def may_go_on(self, trial: str | None) -> bool:
        return not self.spent and trial not in self.wound_up

    def forget(self) -> None:
        self.closed = True  # an offer still in flight must not write the file again
        self.state.unlink(missing_ok=True)

    def _save(self) -> None:
        if self.closed:
            return
        tmp = self.state.with_name(f".{self.state.name}.tmp")
        tmp.write_text(json.dumps({"cost": self.cost, "spent": self.spent, "wound_up": sorted(self.wound_up)}))
        os.replace(tmp, self.state)


class SearchBulletin:
    """Made on the driver (which must keep it alive while the trials run and ``close`` it after),
    handed to every trial and to the scheduler."""

    def __init__(self, seed: float) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.seed = float(seed)
        # on the driver's node while it lives (soft: anywhere else rather than nowhere)
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
        # no CPU of its own: it must never keep a trial from starting
        self._actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, scheduling_strategy=here)(
            _Board).remote(self.seed, uuid.uuid4().hex)

    def close(self) -> None:
        """The driver's call once the trials have ended: the actor and its file go."""
        if not ray.is_initialized():
            return  # Ray, and the actor with it, is gone
        try:
            ray.get(self._actor.forget.remote(), timeout=60)
        except (ray.exceptions.RayError, TimeoutError):
            pass  # gone already, or out of reach: its file stays behind in its node's temp folder
        finally:
            try:
                ray.kill(self._actor)
            except (ray.exceptions.RayError, ValueError):
                pass

    def least(self) -> float:
        """The cost of the leanest feasible model the search holds (the seed until one is offered)."""
        try:
            return float(ray.get(self._actor.least.remote(), timeout=60))
        except (ray.exceptions.RayError, TimeoutError):
            return self.seed

    def offer(self, cost: float) -> None:
        try:
            ray.get(self._actor.offer.remote(float(cost)), timeout=60)
        except (ray.exceptions.RayError, TimeoutError):
            pass  # the bound stays where it was: only work is lost, never a model

    def spend(self) -> None:
        """The search's budget is spent (the scheduler's call; it does not wait)."""
        self._actor.spend.remote()

    def wind_up(self, trial: str) -> None:
        """Early stopping would stop ``trial``, which has candidates ready: it is to end with
        them (the scheduler's call; it does not wait)."""
        self._actor.wind_up.remote(trial)

    def go_on(self, trial: str | None = None) -> bool:
        """Whether ``trial`` may train candidates past those it has ready: until the budget is
        spent or the trial is wound up."""
        try:
            return bool(ray.get(self._actor.may_go_on.remote(trial), timeout=60))
        except (ray.exceptions.RayError, TimeoutError):
            return True
