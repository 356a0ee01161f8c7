"""NetTailor behind the method contract: its candidates are the prunings of one trained student."""

from __future__ import annotations

from typing import Any

from torch import nn

from raytailor.methods import Candidate, MethodOutcome, TailoringMethod
from raytailor.nettailor.config import NetTailorConfig


class NetTailor(TailoringMethod):
    name = "nettailor"
    config_type = NetTailorConfig

    def tailor(self, pretrained, teacher, config, *, image_size, train_loader, val_loader, report,
               verbose, goal=None) -> MethodOutcome:
        from raytailor.nettailor.pipeline import run_nettailor

        outcome = run_nettailor(pretrained, teacher, config=config, image_size=image_size, train_loader=train_loader,
                                val_loader=val_loader, on_epoch=report, verbose=verbose, goal=goal)
        candidates = []
        for pruning in outcome.prunings:
            model = pruning.model
            blocks = sum(p.kind == "block" for p in pruning.survivors)
            candidates.append(Candidate(
                model=model, task_modules=model.task_modules(),
                architecture={"paths": [p.to_list() for p in model.paths]},
                details={"blocks_kept": blocks, "blocks_total": pretrained.num_blocks,
                         "proxies_kept": len(pruning.survivors) - blocks},
                params={"theta": pruning.theta, "blocks_removed": pruning.blocks_removed},
            ))
        return MethodOutcome(candidates, details={"prunings_duplicate": outcome.duplicates,
                                                  "prunings_empty": outcome.empty,
                                                  "prunings_skipped": outcome.skipped},
                             cut_short=outcome.cut_short)

    def fewest_epochs(self, values: dict[str, list]) -> int:
        """The student and one fine-tune (more where several prunings are fine-tuned)."""
        return min(values["student_epochs"]) + min(values["finetune_epochs"])

    def check(self, values: dict[str, list], backbone) -> None:
        from raytailor.errors import SpecError

        blocks = backbone.num_blocks
        for name in ("blocks_removed", "prune_blocks"):
            flat = [v for value in values.get(name, []) for v in (value if isinstance(value, list) else [value])]
            too_many = [v for v in flat if v > blocks]
            if too_many:
                raise SpecError(f"{name} may be {max(too_many)}, but {backbone.arch} has {blocks} blocks to remove; "
                                f"keep {name} <= {blocks}")

    def rebuild(self, architecture: dict[str, Any]) -> nn.Module:
        from raytailor.nettailor.compaction import build_path_network
        from raytailor.nettailor.graph import Path

        return build_path_network(
            arch=architecture["arch"], num_classes=architecture["num_classes"],
            paths=[Path.from_list(p) for p in architecture["paths"]], image_size=architecture["input"]["image_size"],
        )


METHOD = NetTailor()
