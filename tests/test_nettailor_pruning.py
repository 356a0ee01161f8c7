"""Self, input and output exclusion on hand-built graphs."""

import pytest

from raytailor.errors import TailoringError
from raytailor.nettailor.graph import Path, dense_paths
from raytailor.nettailor.pruning import prune_exclusions, select_survivors, self_exclusion

B = lambda j: Path(j, j - 1, "block")  # noqa: E731
P = lambda i, j: Path(j, i, "proxy")  # noqa: E731


def test_dense_paths_counts():
    assert len([p for p in dense_paths(16, 3) if p.kind == "proxy"]) == 45
    assert len([p for p in dense_paths(16, 1) if p.kind == "proxy"]) == 16
    assert len([p for p in dense_paths(16, 5) if p.kind == "proxy"]) == 70


def test_self_exclusion_theta_and_k_weakest_blocks():
    paths = [B(1), P(0, 1), B(2), P(1, 2), B(3), P(2, 3)]
    alpha = [0.9, 0.1, 0.3, 0.7, 0.6, 0.01]
    removed = self_exclusion(paths, alpha, theta=0.05, blocks_removed=1)
    assert removed == {P(2, 3), B(2)}


def test_input_exclusion_kills_everything_reading_a_dead_node():
    # 3 blocks, k=1. Node 1 loses both inputs -> block 2 and proxy 1->2 have no input.
    paths = dense_paths(3, 1)
    removed = prune_exclusions(paths, {B(1), P(0, 1)}, last_node=3)
    assert {B(2), P(1, 2)} <= removed
    # node 2 is then dead too, so everything leaving it dies: the net is cut.
    assert {B(3), P(2, 3)} <= removed


def test_output_exclusion_kills_everything_entering_an_unread_node():
    # k=2, 3 blocks. Remove every path that reads node 1 (block 2, proxies 1->2, 1->3):
    # node 1's inputs (block 1, proxy 0->1) are useless and must go, nothing else.
    paths = dense_paths(3, 2)
    start = {B(2), P(1, 2), P(1, 3)}
    removed = prune_exclusions(paths, start, last_node=3)
    assert removed == start | {B(1), P(0, 1)}
    alive = [p for p in paths if p not in removed]
    assert set(alive) == {P(0, 2), B(3), P(2, 3)}


def test_chain_of_exclusions_reaches_a_fixed_point():
    # k=1, 4 blocks: removing proxy 2->3 and block 3 kills node 3, then node 3's output
    # paths (block 4, proxy 3->4) by input exclusion; node 4 is last and then unreachable.
    paths = dense_paths(4, 1)
    with pytest.raises(TailoringError, match="every path to the classifier"):
        select_survivors(paths, [1.0 if p not in {B(3), P(2, 3)} else 0.0 for p in paths],
                         theta=0.05, blocks_removed=1, last_node=4)


def test_last_node_outputs_are_never_excluded():
    paths = dense_paths(2, 1)
    assert prune_exclusions(paths, set(), last_node=2) == set()
