"""Which pruning of a student leanest_first, leanest_up and bisect fine-tune next, on scripted
fine-tune outcomes."""

from __future__ import annotations

import itertools
import math

from raytailor.nettailor.finetune_order import fine_tune_order


def walk(costs, accuracy, target, bounds=None, probe=True, policy=None):
    """The positions fine-tuned, in order, when pruning p fine-tunes to ``accuracy[p]`` (``policy``
    None: leanest_first, or leanest_up without the ``probe``)."""
    bounds = iter(bounds) if bounds is not None else itertools.repeat(math.inf)
    policy = policy or ("leanest_first" if probe else "leanest_up")
    order = fine_tune_order(policy, costs, bound=lambda: next(bounds))
    tried = []
    while (position := order.next()) is not None:
        tried.append(position)
        order.reached(position, accuracy[position] >= target)
    assert order.tried == tried
    return tried


def leanest_reaching(costs, accuracy, target):
    reaching = [p for p in range(len(costs)) if accuracy[p] >= target]
    return min(reaching, key=lambda p: costs[p], default=None)


def test_the_leanest_that_reaches_the_target_is_found_when_accuracy_grows_with_cost():
    """Every target on every monotone grid of 1-6 prunings (given in shuffled positions): the
    pruning the run would choose among all of them fine-tuned is among those fine-tuned, and
    the number of fine-tunes is the one the module's docstring gives."""
    for n in range(1, 7):
        costs = [float(c) for c in (3, 1, 6, 2, 5, 4)[:n]]  # positions are not in cost order
        accuracy = [10.0 * c for c in costs]
        ranked = sorted(range(n), key=lambda p: costs[p])
        for j in range(n + 1):  # the leanest reaching the target is the j-th by cost (0: none)
            target = accuracy[ranked[j - 1]] if j else 1e9
            tried = walk(costs, accuracy, target)
            chosen = leanest_reaching(costs, accuracy, target)
            assert chosen is None or chosen in tried
            assert min((p for p in tried if accuracy[p] >= target), key=lambda p: costs[p], default=None) == chosen
            expected = {0: min(n, 2), 1: 1, n: n}.get(j, j + 1)
            assert len(tried) == expected, (n, j, tried)
            assert tried[0] == ranked[0]  # the leanest first, whatever the target


def test_a_missing_probe_ends_the_walk_and_a_reaching_one_lets_it_go_on_below():
    costs = [1.0, 2.0, 3.0, 4.0]
    assert walk(costs, [50, 60, 70, 80], target=90) == [0, 3]  # none reaches it: 2 fine-tunes, not 4
    assert walk(costs, [50, 60, 70, 80], target=65) == [0, 3, 1, 2]  # the probe reaches it: go on up to it
    assert walk(costs, [50, 95, 70, 80], target=90) == [0, 3]  # non-monotone: the 2nd is left out
    assert walk(costs, [95, 0, 0, 0], target=90) == [0]  # the leanest reaches it: nothing else


def test_nothing_costlier_than_the_bound_is_fine_tuned_past_the_leanest():
    costs = [1.0, 2.0, 3.0, 4.0, 5.0]
    accuracy = [50, 60, 70, 80, 90]
    # the bound leaves 1..3 of use: the probe is the costliest of those, not the grid's
    assert walk(costs, accuracy, target=75, bounds=[3.0] * 5) == [0, 2]
    # the bound falls under the probe's cost before the walk goes on: it stops there
    assert walk(costs, accuracy, target=65, bounds=[4.0, 2.5, 2.5]) == [0, 3, 1]
    # a bound under every cost: the leanest only (the run yields a model)
    assert walk(costs, accuracy, target=65, bounds=[0.0] * 5) == [0]
    # equal costs: the lower position first
    assert walk([2.0, 1.0, 1.0], [99, 99, 99], target=90) == [1]


def test_without_the_probe_the_walk_finds_the_leanest_that_reaches_the_target_whatever_the_accuracies():
    """leanest_up: from the leanest up to the first that reaches the target (j fine-tunes; n when
    none does), also where accuracy falls as the cost grows (a probe would end the walk early)."""
    costs = [1.0, 2.0, 3.0, 4.0]
    assert walk(costs, [50, 95, 70, 80], target=90, probe=False) == [0, 1]  # the probe would miss it
    assert walk(costs, [50, 95, 70, 80], target=90) == [0, 3]
    assert walk(costs, [50, 60, 70, 80], target=90, probe=False) == [0, 1, 2, 3]  # none: every one
    for accuracy in itertools.permutations([50, 60, 70, 95]):
        tried = walk(costs, list(accuracy), target=90, probe=False)
        assert tried == list(range(accuracy.index(95) + 1))
    # the bound still leaves out what costs more than a feasible model the search holds
    assert walk(costs, [50, 60, 70, 95], target=90, bounds=[2.5] * 4, probe=False) == [0, 1]


def test_bisect_finds_the_leanest_that_reaches_the_target_in_log_fine_tunes_when_accuracy_grows_with_cost():
    """Every target on every monotone grid of 1-7 prunings (shuffled positions): the pruning the
    run would choose among all of them fine-tuned is found, in ceil(log2(n + 1)) fine-tunes at
    most, the middle one (the leaner of two) first."""
    for n in range(1, 8):
        costs = [float(c) for c in (3, 1, 6, 2, 5, 7, 4)[:n]]
        accuracy = [10.0 * c for c in costs]
        ranked = sorted(range(n), key=lambda p: costs[p])
        for j in range(n + 1):
            target = accuracy[ranked[j - 1]] if j else 1e9
            tried = walk(costs, accuracy, target, policy="bisect")
            chosen = leanest_reaching(costs, accuracy, target)
            assert min((p for p in tried if accuracy[p] >= target), key=lambda p: costs[p], default=None) == chosen
            assert len(tried) <= math.ceil(math.log2(n + 1)), (n, j, tried)
            assert len(set(tried)) == len(tried)
            assert tried[0] == ranked[(n - 1) // 2]
    # 3 prunings: always 2 fine-tunes, where leanest_first takes 1 to 3
    assert walk([1.0, 2.0, 3.0], [95, 95, 95], target=90, policy="bisect") == [1, 0]
    assert walk([1.0, 2.0, 3.0], [50, 60, 95], target=90, policy="bisect") == [1, 2]
    assert walk([1.0, 2.0, 3.0], [50, 60, 95], target=90) == [0, 2, 1]


def test_bisect_keeps_to_the_bound_and_trusts_every_miss_and_hit():
    costs = [1.0, 2.0, 3.0, 4.0, 5.0]
    accuracy = [50, 60, 70, 80, 90]
    # the bound leaves 1..3 of use: the middle of those first
    assert walk(costs, accuracy, target=65, bounds=[3.0] * 5, policy="bisect") == [1, 2]
    # a bound under every cost: the leanest only (the run yields a model)
    assert walk(costs, accuracy, target=65, bounds=[0.0] * 5, policy="bisect") == [0]
    # the bound falls below what a hit left of use: it ends there
    assert walk(costs, accuracy, target=55, bounds=[9.0, 1.5, 1.5], policy="bisect") == [2, 0]
    # non-monotone: a miss rules out every cheaper pruning, though one of them would reach it
    assert walk(costs, [95, 50, 50, 50, 95], target=90, policy="bisect") == [2, 3, 4]
    # equal costs: one as costly as a hit is not fine-tuned, one as costly as a miss is (other paths)
    assert walk([1.0, 2.0, 2.0], [50, 95, 95], target=90, policy="bisect") == [1, 0]
    assert walk([1.0, 2.0, 2.0], [50, 50, 95], target=90, policy="bisect") == [1, 2]
    assert walk([1.0, 2.0, 2.0, 3.0], [50, 50, 95, 99], target=90, policy="bisect") == [1, 2]
