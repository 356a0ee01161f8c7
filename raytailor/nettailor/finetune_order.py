"""Which pruning of one trained student to fine-tune next (``finetune_prunings: leanest_first``,
``leanest_up`` or ``bisect``).

A run chooses the leanest fine-tuned pruning that reaches the accuracy target, so a pruning
as costly as one that reached it or costlier is of no use, nor is one costlier than ``bound`` (the
teacher's cost, or a feasible model the search already holds; it may fall while the run goes
on). The prunings are fine-tuned from the leanest up (``leanest_up``: nothing else), with one
exception (``leanest_first``): after the first miss,
the costliest pruning still of use is fine-tuned next, as a probe. If the probe misses too, no
pruning in between is fine-tuned: each keeps no more of the student than the probe does when
the grid varies K alone (a larger K removes more blocks from the same attention), so none is
expected to be more accurate. If the probe reaches the target, the walk up from the leanest
goes on below it.

Fine-tunes, for n prunings of use with the leanest reaching the target at position j (1-based):
the walk alone costs j (n when none reaches it); with the probe, 1 when j = 1, j + 1 when
1 < j < n, n when j = n, and 2 when none reaches it. The leanest pruning that reaches the target
is found whenever accuracy does not fall as the cost grows; where it does (more paths, the same
short fine-tune), a pruning below a missing probe may be left out. Without the probe the walk
always finds it, at j fine-tunes (n when none reaches it): the order for tasks where a short
fine-tune's accuracy hardly depends on the cost (on the demo at 4 fine-tune epochs, K = 4 and
6 met the target where K = 0 missed; README "Search efficiency").

``bisect`` searches for the same pruning by halving (``Bisect``): the middle one of use first,
then the middle of the leaner ones after a hit, of the costlier ones after a miss (a miss rules
out every cheaper pruning, a hit every one as costly or costlier; one as costly as a miss is
still of use, its paths being others). Where accuracy
grows with cost that finds the leanest pruning reaching the target in ceil(log2(n + 1))
fine-tunes at most, whatever its position: 2 for 3 prunings, 3 for up to 7, where the walk with
the probe takes up to n (with distinct costs; every pruning as costly as a miss is fine-tuned
too). It never fine-tunes 1 where the leanest reaches the target and more than 2 prunings are
of use: the order for grids where the leanest seldom does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

# the ``finetune_prunings`` values that fine-tune a student's prunings by cost, in an order of this module
BY_COST = ("leanest_first", "leanest_up", "bisect")


def by_cost(costs: Sequence[float]) -> list[int]:
    """The positions of ``costs``, the least cost first (among equal costs, the lower position)."""
    return sorted(range(len(costs)), key=lambda p: costs[p])


class LeanestFirst:
    """``next()`` names the position (in ``costs``) of the pruning to fine-tune next, None when
    no other is of use; ``reached(position, met)`` says how its fine-tune ended. Among equal
    costs, the lower position goes first. ``probe`` False: the walk alone (``leanest_up``).
    ``bound`` is read once per ``next()`` past the first (the leanest is always fine-tuned, so
    the run yields a model)."""

    def __init__(self, costs: Sequence[float], bound: Callable[[], float] = lambda: math.inf, *,
                 probe: bool = True) -> None:
        self.costs = list(costs)
        self.bound = bound
        self.probe = probe
        self.order = by_cost(self.costs)
        self.tried: list[int] = []
        self.feasible_cost = math.inf  # the least cost fine-tuned to the target so far
        self._probing = False
        self._probed = False
        self._done = False

    def next(self) -> int | None:
        if self._done:
            return None
        bound = self.bound() if self.tried else math.inf
        useful = [p for p in self.order if p not in self.tried
                  and self.costs[p] < self.feasible_cost and self.costs[p] <= bound]
        if not useful:
            return None
        self._probing = (self.probe and bool(self.tried) and not self._probed and math.isinf(self.feasible_cost)
                         and len(useful) >= 2)
        self._probed |= self._probing
        return useful[-1] if self._probing else useful[0]

    def reached(self, position: int, met: bool) -> None:
        self.tried.append(position)
        if met:
            self.feasible_cost = min(self.feasible_cost, self.costs[position])
        elif self._probing:
            self._done = True  # the costliest of use misses: the leaner ones are not tried


class Bisect:
    """``finetune_prunings: bisect``, with ``LeanestFirst``'s interface: the middle pruning of
    use (the leaner of two middles), where of use means not tried, no cheaper than any miss,
    cheaper than every hit and not costlier than ``bound`` (read at every ``next()``). If the bound leaves
    none at the first ``next()``, the leanest (the run yields a model)."""

    def __init__(self, costs: Sequence[float], bound: Callable[[], float] = lambda: math.inf) -> None:
        self.costs = list(costs)
        self.bound = bound
        self.order = by_cost(self.costs)
        self.tried: list[int] = []
        self.feasible_cost = math.inf  # the least cost fine-tuned to the target so far
        self.missed_cost = -math.inf  # the greatest cost fine-tuned short of it so far

    def next(self) -> int | None:
        bound = self.bound()
        useful = [p for p in self.order if p not in self.tried
                  and self.missed_cost <= self.costs[p] < self.feasible_cost and self.costs[p] <= bound]
        if not useful:
            return None if self.tried or not self.order else self.order[0]
        return useful[(len(useful) - 1) // 2]

    def reached(self, position: int, met: bool) -> None:
        self.tried.append(position)
        if met:
            self.feasible_cost = min(self.feasible_cost, self.costs[position])
        else:
            self.missed_cost = max(self.missed_cost, self.costs[position])


def fine_tune_order(policy: str, costs: Sequence[float],
                    bound: Callable[[], float] = lambda: math.inf) -> LeanestFirst | Bisect:
    """The order ``finetune_prunings`` names (``leanest_first``, ``leanest_up`` or ``bisect``)."""
    if policy == "bisect":
        return Bisect(costs, bound)
    return LeanestFirst(costs, bound, probe=policy == "leanest_first")
