"""Expected network complexity E[C] (paper Eq. 5-10), differentiable in the attention alpha.

For path i->j with normalised cost C_ij and r = 1 - alpha (probability of self-exclusion):

    E[C_ij] = C_ij * (1 - r_ij - P_inp - P_out)                                 # Eq. 9
    P_inp = prod of r over every path entering the node the path *reads*      # Eq. 7
            (node j-1 for block G_j, node i for proxy A_ji; 0 for the stem, which has no inputs)
    P_out = prod of r over every path leaving the node the path *writes*      # Eq. 8
            (block G_{j+1} and proxies j->k; 0 for the last node, read by the classifier)
    E[C]  = sum over paths of E[C_ij]                                          # Eq. 10

The public code always takes node i-1's inputs for the input term; here each path uses the
node it actually reads.
"""

from __future__ import annotations

import torch

from raytailor.nettailor.graph import Path


class ExpectedComplexity:
    """Precomputed gather indices so E[C] is a few vectorised ops per training step."""

    def __init__(self, paths: list[Path], last_node: int) -> None:
        self.paths = list(paths)
        pad = len(self.paths)  # index of the constant 1.0 appended to r
        position = {p: i for i, p in enumerate(self.paths)}

        def gather_rows(groups: list[list[Path]]) -> torch.Tensor:
            width = max(1, max(len(g) for g in groups))
            return torch.tensor([[position[p] for p in g] + [pad] * (width - len(g)) for g in groups])

        self.input_index = gather_rows([[q for q in self.paths if q.dst == p.src] for p in self.paths])
        self.output_index = gather_rows([[q for q in self.paths if q.src == p.dst] for p in self.paths])
        self.has_input = torch.tensor([p.src != 0 for p in self.paths], dtype=torch.float32)
        self.has_output = torch.tensor([p.dst != last_node for p in self.paths], dtype=torch.float32)

    def __call__(self, alpha: torch.Tensor, costs: torch.Tensor) -> torch.Tensor:
        device = alpha.device
        r = torch.cat([1.0 - alpha, alpha.new_ones(1)])
        p_inp = r[self.input_index.to(device)].prod(dim=1) * self.has_input.to(device)
        p_out = r[self.output_index.to(device)].prod(dim=1) * self.has_output.to(device)
        return (costs * (1.0 - r[:-1] - p_inp - p_out)).sum()
