"""Teacher term Omega (paper Eq. 11): match the teacher's block outputs and logits.

Like the public code, each term is a mean-reduced MSE and the terms are averaged, so gamma2 = 10
keeps the paper's meaning. Student nodes removed by pruning are skipped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def teacher_loss(
    student_nodes: dict[int, torch.Tensor], student_logits: torch.Tensor,
    teacher_nodes: list[torch.Tensor], teacher_logits: torch.Tensor,
) -> torch.Tensor:
    terms = [F.mse_loss(x, teacher_nodes[node]) for node, x in student_nodes.items() if node > 0]
    terms.append(F.mse_loss(student_logits, teacher_logits))
    return torch.stack(terms).mean()
