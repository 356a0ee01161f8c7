"""Which paths survive (paper Sec. 3.4.1 / 3.5).

1. self-exclusion: proxies with alpha < theta, and the K blocks with the smallest alpha;
2. input exclusion: a node with no live entering path is dead, and every path reading it dies;
3. output exclusion: a node (other than the last) with no live leaving path is useless, and
   every path entering it dies.
2 and 3 repeat until nothing changes (the public code never does 3).
"""

from __future__ import annotations

from raytailor.errors import TailoringError
from raytailor.nettailor.graph import Path


def self_exclusion(
    paths: list[Path], alpha: list[float], *, theta: float, blocks_removed: int
) -> set[Path]:
    """Paths below the attention threshold, plus the ``blocks_removed`` weakest blocks."""
    removed = {p for p, a in zip(paths, alpha) if p.kind == "proxy" and a < theta}
    blocks = sorted((a, p) for p, a in zip(paths, alpha) if p.kind == "block")
    removed |= {p for _, p in blocks[:blocks_removed]}
    return removed


def prune_exclusions(paths: list[Path], removed: set[Path], *, last_node: int) -> set[Path]:
    """Grow ``removed`` by input and output exclusion until a fixed point."""
    removed = set(removed)
    while True:
        alive = [p for p in paths if p not in removed]
        fed = {0} | {p.dst for p in alive}
        read = {last_node} | {p.src for p in alive}
        dying = {p for p in alive if p.src not in fed or p.dst not in read}
        if not dying:
            return removed
        removed |= dying


def select_survivors(
    paths: list[Path], alpha: list[float], *, theta: float, blocks_removed: int, last_node: int
) -> list[Path]:
    """The paths NetTailor keeps; raises if nothing reaches the classifier any more."""
    removed = self_exclusion(paths, alpha, theta=theta, blocks_removed=blocks_removed)
    removed = prune_exclusions(paths, removed, last_node=last_node)
    survivors = [p for p in paths if p not in removed]
    if not any(p.dst == last_node for p in survivors):
        raise TailoringError(
            f"pruning removed every path to the classifier (theta={theta}, "
            f"blocks_removed={blocks_removed}); lower theta or blocks_removed"
        )
    return survivors
