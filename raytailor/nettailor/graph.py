"""The NetTailor path graph (paper Sec. 3.3, Eq. 4).

Nodes 0..L: node 0 is the stem output, node l the output of block l. Paths entering node l:
the pre-trained block G_l (reads node l-1) and one proxy A_lp from each of the k previous
nodes p = max(l-k, 0) .. l-1. A path is identified by (source node, destination node, kind).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PathKind = Literal["block", "proxy"]


@dataclass(frozen=True, order=True)
class Path:
    dst: int  # node the path writes into (sorting by dst keeps a topological order)
    src: int  # node the path reads from
    kind: PathKind

    @property
    def name(self) -> str:
        """Stable module key: ``block7`` or ``proxy3_7`` (proxy from node 3 into node 7)."""
        return f"block{self.dst}" if self.kind == "block" else f"proxy{self.src}_{self.dst}"

    def to_list(self) -> list:
        return [self.src, self.dst, self.kind]

    @classmethod
    def from_list(cls, item: list) -> "Path":
        src, dst, kind = item
        if kind not in ("block", "proxy") or (kind == "block" and src != dst - 1):
            raise ValueError(f"invalid path {item!r}")
        return cls(dst=int(dst), src=int(src), kind=kind)


def dense_paths(num_blocks: int, skips: int) -> list[Path]:
    """Every path of the initial student: L blocks + min(l, k) proxies into each node l."""
    if skips < 0:
        raise ValueError(f"skips must be >= 0, got {skips}")
    paths = []
    for dst in range(1, num_blocks + 1):
        paths.append(Path(dst=dst, src=dst - 1, kind="block"))
        paths.extend(Path(dst=dst, src=src, kind="proxy") for src in range(max(dst - skips, 0), dst))
    return sorted(paths)


def incoming(paths: list[Path], node: int) -> list[Path]:
    return [p for p in paths if p.dst == node]


def outgoing(paths: list[Path], node: int) -> list[Path]:
    """Paths that read ``node``: the next block and the proxies leaving it."""
    return [p for p in paths if p.src == node]
