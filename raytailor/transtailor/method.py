"""TransTailor behind the method contract: its candidates are the steps of its chain (W* first)."""

from __future__ import annotations

from typing import Any

from torch import nn

from raytailor.methods import Candidate, MethodOutcome, TailoringMethod
from raytailor.transtailor.config import TransTailorConfig


class TransTailor(TailoringMethod):
    name = "transtailor"
    config_type = TransTailorConfig

    def tailor(self, pretrained, teacher, config, *, image_size, train_loader, val_loader, report,
               verbose, goal=None) -> MethodOutcome:
        """Filter pruning needs no distillation teacher: the teacher stays the accuracy reference."""
        from raytailor.transtailor.pipeline import run_transtailor

        outcome = run_transtailor(pretrained, config=config, image_size=image_size, train_loader=train_loader,
                                  val_loader=val_loader, on_epoch=report, verbose=verbose, goal=goal)
        candidates = [
            # every weight was fine-tuned and any layer may be narrower: the whole model is the task's
            # (task_modules None); each step waits on disk until run.py loads it
            Candidate(model=module, architecture={"widths": record["widths"]},
                      details={"accepted": record["accepted"], "filters_removed": record["filters_removed"]})
            for record, module in zip(outcome.chain, outcome.submodels)
        ]
        return MethodOutcome(candidates, chosen=outcome.chosen_iteration,
                             details={"iterations": len(outcome.chain) - 1, "stop_reason": outcome.stop_reason},
                             cut_short=outcome.stop_reason == "cut_short")

    def fewest_epochs(self, values: dict[str, list]) -> int:
        """W* and the first iteration's factors (no filter left to prune ends the chain there;
        every other end fine-tunes at least once more)."""
        return sum(min(values[name]) for name in ("classifier_epochs", "full_finetune_epochs", "factor_epochs"))

    def rebuild(self, architecture: dict[str, Any]) -> nn.Module:
        from raytailor.transtailor.rebuild import rebuild_pruned

        return rebuild_pruned(arch=architecture["arch"], num_classes=architecture["num_classes"],
                              widths=architecture["widths"])


METHOD = TransTailor()
