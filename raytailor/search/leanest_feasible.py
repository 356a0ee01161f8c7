"""The cost of the leanest feasible model a search holds, shared with its running trials.

A model that costs more than one the search already holds (feasible, saved) cannot be the
search's leanest feasible model, and one that costs more than the teacher (which meets the
target by definition) is of no use at all. A method that can leave out work on such models
(NetTailor's ``finetune_prunings: leanest_first``: the prunings it would fine-tune past the
leanest) reads this bound through ``methods.Goal.leaner_than`` before each costly step.

One small Ray actor per task keeps the least cost: seeded with the teacher's and, on resume,
with that of the kept trials' models; each trial offers its own chosen model's cost once it is
feasible and saved (its final report returned, so a bound never stands for a model that was
lost). Trials that run side by side learn of each other's models as they go. If the actor
cannot be reached, a trial falls back to the seed.
"""

from __future__ import annotations

import math

import ray


class _Least:
    def __init__(self, cost: float) -> None:
        self.cost = cost

    def offer(self, cost: float) -> None:
        if math.isfinite(cost):
            self.cost = min(self.cost, cost)

    def least(self) -> float:
        return self.cost


class LeanestFeasible:
    """Made on the driver (which must keep it alive while the trials run), handed to every trial."""

    def __init__(self, seed: float) -> None:
        self.seed = float(seed)
        # no CPU of its own: it must never keep a trial from starting
        self._actor = ray.remote(num_cpus=0)(_Least).remote(self.seed)

    def least(self) -> float:
        try:
            return float(ray.get(self._actor.least.remote(), timeout=60))
        except (ray.exceptions.RayError, TimeoutError):
            return self.seed

    def offer(self, cost: float) -> None:
        try:
            ray.get(self._actor.offer.remote(float(cost)), timeout=60)
        except (ray.exceptions.RayError, TimeoutError):
            pass  # the bound stays where it was: only work is lost, never a model
