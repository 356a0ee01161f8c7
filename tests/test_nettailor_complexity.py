"""E[C] (Eq. 5-10) against a slow reference written straight from the paper."""

import math
import random

import pytest
import torch

from raytailor.nettailor.complexity import ExpectedComplexity
from raytailor.nettailor.graph import Path, dense_paths


def slow_expected_complexity(paths, alpha, costs, last_node):
    """Direct loops over Eq. 7-10, with plain floats."""
    r = {p: 1.0 - a for p, a in zip(paths, alpha)}
    total = 0.0
    for p, cost in zip(paths, costs):
        reads = p.src  # block G_j reads node j-1 = p.src; proxy A_ji reads node i = p.src
        entering = [q for q in paths if q.dst == reads]
        p_inp = math.prod(r[q] for q in entering) if reads != 0 else 0.0  # Eq. 7
        leaving = [q for q in paths if q.src == p.dst]
        p_out = math.prod(r[q] for q in leaving) if p.dst != last_node else 0.0  # Eq. 8
        total += cost * (1.0 - r[p] - p_inp - p_out)  # Eq. 9
    return total  # Eq. 10


@pytest.mark.parametrize("num_blocks,skips", [(4, 1), (9, 3), (16, 3), (12, 5)])
def test_expected_complexity_matches_reference(num_blocks, skips):
    rng = random.Random(num_blocks * 10 + skips)
    paths = dense_paths(num_blocks, skips)
    for _ in range(5):
        alpha = [rng.random() for _ in paths]
        costs = [rng.random() for _ in paths]
        fast = ExpectedComplexity(paths, num_blocks)(
            torch.tensor(alpha, dtype=torch.float64), torch.tensor(costs, dtype=torch.float64)
        )
        assert fast.item() == pytest.approx(slow_expected_complexity(paths, alpha, costs, num_blocks), rel=1e-12)


def test_input_term_uses_the_node_a_proxy_reads():
    # Node 2 is fed only by block 2 and proxy 1->2; when both are off, proxy 2->3 (reading node 2)
    # is input-excluded, while block 3 (which reads node 2 too) is as well. The public code's
    # "node i-1" simplification would look at node 1 for the proxy instead.
    paths = dense_paths(3, 1)
    alpha = {p: 0.5 for p in paths}
    alpha[Path(2, 1, "block")] = 0.0
    alpha[Path(2, 1, "proxy")] = 0.0
    a = torch.tensor([alpha[p] for p in paths], dtype=torch.float64)
    costs = torch.zeros(len(paths), dtype=torch.float64)
    target = paths.index(Path(3, 2, "proxy"))
    costs[target] = 1.0
    # 1 - r(0.5) - P_inp(1.0) - P_out(0: node 3 is last) = -0.5
    assert ExpectedComplexity(paths, 3)(a, costs).item() == pytest.approx(-0.5)


def test_gradient_pushes_blocks_down_relative_to_proxies():
    paths = dense_paths(6, 2)
    costs = torch.tensor([1.0 if p.kind == "block" else 0.05 for p in paths])
    alpha = torch.full((len(paths),), 0.5, requires_grad=True)
    ExpectedComplexity(paths, 6)(alpha, costs).backward()
    block_grad = alpha.grad[[i for i, p in enumerate(paths) if p.kind == "block"]].mean()
    proxy_grad = alpha.grad[[i for i, p in enumerate(paths) if p.kind == "proxy"]].mean()
    assert block_grad > proxy_grad
