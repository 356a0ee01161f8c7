"""NetTailor hyper-parameters. Field names are the names a spec's ``space``/``fixed`` use."""

from __future__ import annotations

from dataclasses import dataclass, field

from raytailor.nettailor.finetune_order import BY_COST


FINETUNE_PRUNINGS = ("all", *BY_COST)
STUDENT_CLASSIFIERS = ("teacher", "fresh")


@dataclass(frozen=True)
class NetTailorConfig:
    gamma1: float = 0.3           # weight of the expected-complexity penalty E[C] (Eq. 12)
    gamma2: float = 10.0          # weight of the teacher term Omega (Eq. 12)
    skips: int = 3                # k: proxies from the k previous nodes into each node (Eq. 4)
    theta: float = 0.05           # proxies with attention below theta are pruned (Sec. 3.5)
    blocks_removed: int = 3       # K: pre-trained blocks with the smallest attention removed
    student_epochs: int = 20
    student_lr: float = 0.1
    finetune_epochs: int = 20     # after pruning, trained with gamma1 = 0
    finetune_lr: float = 0.01
    batch_size: int = 32
    weight_decay: float = 5e-4    # not applied to attention logits
    momentum: float = 0.9
    # One student, many prunings: the trained student is also pruned with every other (theta, K)
    # of the grid prune_thetas x prune_blocks (each with theta / blocks_removed added); each
    # distinct pruning is fine-tuned and is a sub-model. Empty: the one (theta, blocks_removed).
    prune_thetas: list[float] = field(default_factory=list)
    prune_blocks: list[int] = field(default_factory=list)
    # Which prunings are fine-tuned: "all"; "leanest_up": from the leanest up, until one reaches
    # the accuracy target (each left out costs more: it could not be the run's choice, only a
    # more accurate point); "leanest_first": the same, probing the costliest after the first miss
    # and ending if it misses too; "bisect": halving, the middle one first (``finetune_order.py``).
    # The run's own (theta, K) is fine-tuned only if reached.
    finetune_prunings: str = "all"
    # the student's classifier starts as the "teacher"'s (our default) or "fresh" (the public
    # NetTailor code: the new task's classifier, newly initialised)
    student_classifier: str = "teacher"

    def __post_init__(self) -> None:
        checks = [
            (self.gamma1 >= 0, "gamma1", self.gamma1, ">= 0"),
            (self.gamma2 >= 0, "gamma2", self.gamma2, ">= 0"),
            (self.skips >= 0, "skips", self.skips, ">= 0"),
            (0 <= self.theta < 1, "theta", self.theta, "in [0, 1)"),
            (self.blocks_removed >= 0, "blocks_removed", self.blocks_removed, ">= 0"),
            (self.student_epochs >= 1, "student_epochs", self.student_epochs, ">= 1"),
            (self.finetune_epochs >= 0, "finetune_epochs", self.finetune_epochs, ">= 0"),
            (self.student_lr > 0, "student_lr", self.student_lr, "> 0"),
            (self.finetune_lr > 0, "finetune_lr", self.finetune_lr, "> 0"),
            (self.batch_size >= 1, "batch_size", self.batch_size, ">= 1"),
            (self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0"),
            (self.finetune_prunings in FINETUNE_PRUNINGS, "finetune_prunings", self.finetune_prunings,
             "one of " + ", ".join(FINETUNE_PRUNINGS)),
            (self.student_classifier in STUDENT_CLASSIFIERS, "student_classifier", self.student_classifier,
             "one of " + ", ".join(STUDENT_CLASSIFIERS)),
        ]
        checks += [(0 <= t < 1, "prune_thetas", t, "values in [0, 1)") for t in self.prune_thetas]
        checks += [(isinstance(k, int) and k >= 0, "prune_blocks", k, "integers >= 0") for k in self.prune_blocks]
        for ok, name, value, rule in checks:
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {value!r}")
