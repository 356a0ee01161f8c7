"""TransTailor hyper-parameters (Liu et al., AAAI 2021). Defaults follow the paper's Sec. 4."""

from __future__ import annotations

from dataclasses import dataclass

FINETUNE_SCALES = ("alpha", "beta")
GROUP_SCORES = ("sum", "mean")


@dataclass(frozen=True)
class TransTailorConfig:
    # z, the pruning step of one iteration (Alg. 1 line 7); exactly one of the two is used:
    prune_fraction: float | None = 0.1   # MACs removed per iteration, as a fraction of W*'s MACs
    prune_filters: int | None = None     # ... or a count of (coupled) filter channels instead
    tau: float = 0.3                     # accuracy drop in POINTS that stops the search (Eq. 8)
    max_iterations: int = 10
    classifier_epochs: int = 5           # W*: the new FC trained on the target task
    full_finetune_epochs: int = 0        # W*: optionally all weights afterwards (0: skip)
    factor_epochs: int = 2               # alpha trained with weights frozen (Eq. 3)
    finetune_epochs: int = 5             # importance-aware fine-tune (Eq. 6)
    classifier_lr: float = 0.005
    conv_lr: float = 0.0005
    factor_lr: float = 0.01
    weight_decay: float = 0.005
    momentum: float = 0.9
    batch_size: int = 32
    # what multiplies the filter outputs, fixed, during importance-aware fine-tuning (Eq. 6):
    # "alpha", the trained target-aware factors (our default), or "beta", the Taylor importance
    # as Eq. 6 writes it (the paper's; it collapsed accuracy here: README "TransTailor")
    finetune_scale: str = "alpha"
    # how a group of channels coupled by residual additions is ranked: the "sum" of its members'
    # beta (our default; a residual-stream channel sums many, so it is rarely pruned) or their "mean"
    group_score: str = "sum"

    def __post_init__(self) -> None:
        if (self.prune_fraction is None) == (self.prune_filters is None):
            raise ValueError(
                f"exactly one of prune_fraction and prune_filters must be set, got "
                f"prune_fraction={self.prune_fraction!r} prune_filters={self.prune_filters!r}; "
                "set the other to None"
            )
        checks = [
            (self.prune_fraction is None or 0 < self.prune_fraction < 1,
             "prune_fraction", self.prune_fraction, "in (0, 1)"),
            (self.prune_filters is None or (_is_int(self.prune_filters) and self.prune_filters >= 1),
             "prune_filters", self.prune_filters, "an integer >= 1"),
            (self.tau >= 0, "tau", self.tau, ">= 0 (accuracy points, not a fraction)"),
            (_is_int(self.max_iterations) and self.max_iterations >= 1,
             "max_iterations", self.max_iterations, "an integer >= 1"),
            (_is_int(self.classifier_epochs) and self.classifier_epochs >= 0,
             "classifier_epochs", self.classifier_epochs, "an integer >= 0"),
            (_is_int(self.full_finetune_epochs) and self.full_finetune_epochs >= 0,
             "full_finetune_epochs", self.full_finetune_epochs, "an integer >= 0"),
            (_is_int(self.factor_epochs) and self.factor_epochs >= 0,
             "factor_epochs", self.factor_epochs, "an integer >= 0"),
            (_is_int(self.finetune_epochs) and self.finetune_epochs >= 0,
             "finetune_epochs", self.finetune_epochs, "an integer >= 0"),
            (self.classifier_lr > 0, "classifier_lr", self.classifier_lr, "> 0"),
            (self.conv_lr > 0, "conv_lr", self.conv_lr, "> 0"),
            (self.factor_lr > 0, "factor_lr", self.factor_lr, "> 0"),
            (self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0"),
            (0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)"),
            (_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", self.batch_size,
             "an integer >= 1"),
            (self.finetune_scale in FINETUNE_SCALES, "finetune_scale", self.finetune_scale,
             f"one of {', '.join(FINETUNE_SCALES)}"),
            (self.group_score in GROUP_SCORES, "group_score", self.group_score, f"one of {', '.join(GROUP_SCORES)}"),
        ]
        for ok, name, value, rule in checks:
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
