"""What a pruning of the student would cost, and how accurate it is, at any epoch.

Which paths survive depends only on (theta, K) and the attention (``select_survivors``), and a
compacted network is the stem, the classifier and its surviving paths. So the params, MACs and
task params of the model a pruning would produce are a sum over surviving paths plus a fixed
part, measured once on the dense student; they equal what the compacted module measures
(tests/test_nettailor_network.py). Disabling the pruned paths of the student gives the
pruned model's function (before fine-tuning), so its validation accuracy is one evaluation
away. A search uses both to judge a trial long before its end.
"""

from __future__ import annotations

from dataclasses import dataclass

from raytailor.cost import count_params, image_macs
from raytailor.data import TensorLoader
from raytailor.errors import TailoringError
from raytailor.nettailor.graph import Path
from raytailor.nettailor.network import PathNetwork
from raytailor.nettailor.pruning import select_survivors
from raytailor.train import evaluate


@dataclass(frozen=True)
class PathCosts:
    """Exact per-path costs of a dense student. Each path also brings one attention logit."""

    fixed_params: int          # stem + classifier (+ anything else no path owns)
    fixed_macs: int
    classifier_params: int
    params: dict[Path, int]    # the block's or the proxy's own parameters
    macs: dict[Path, int]

    @classmethod
    def measure(cls, student: PathNetwork) -> PathCosts:
        """Measure on the unfolded student (a BN-folded one has fewer parameters)."""
        params = {p: count_params(student.blocks[p.name] if p.kind == "block" else student.proxies[p.name])
                  for p in student.paths}
        macs = dict(zip(student.paths, student.path_macs))
        return cls(
            fixed_params=count_params(student) - sum(params.values()) - len(student.paths),
            fixed_macs=image_macs(student, student.image_size) - sum(macs.values()),
            classifier_params=count_params(student.classifier), params=params, macs=macs,
        )

    def of(self, survivors: list[Path]) -> dict[str, int]:
        """``projected_params``, ``projected_macs`` and ``projected_task_params`` of the compacted
        network that keeps ``survivors`` (the keys of a method estimate, ``raytailor.methods``)."""
        proxies = [p for p in survivors if p.kind == "proxy"]
        return {
            "projected_params": self.fixed_params + sum(self.params[p] + 1 for p in survivors),
            "projected_macs": self.fixed_macs + sum(self.macs[p] for p in survivors),
            "projected_task_params": self.classifier_params + sum(self.params[p] for p in proxies) + len(survivors),
        }

    def projected(self, student: PathNetwork, *, theta: float, blocks_removed: int,
                  val_loader: TensorLoader | None = None, alpha: list[float] | None = None) -> dict[str, float]:
        """The costs of pruning ``student`` now with (theta, K), and with ``val_loader`` the
        pruned student's validation accuracy (``projected_val_accuracy``: the compacted model
        before fine-tuning computes the same function); empty if that pruning would leave no path
        to the classifier. ``alpha``: the student's attention weights, if already read back."""
        if alpha is None:
            alpha = student.attention_weights().detach().cpu().tolist()
        try:
            survivors = select_survivors(student.paths, alpha, theta=theta, blocks_removed=blocks_removed,
                                         last_node=student.num_nodes)
        except TailoringError:
            return {}
        projected: dict[str, float] = dict(self.of(survivors))
        if val_loader is not None:
            dense = student.disabled
            student.disable(set(student.paths) - set(survivors))
            try:
                projected["projected_val_accuracy"] = evaluate(student, val_loader)
            finally:
                student.disable(dense)
        return projected
