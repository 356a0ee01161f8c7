"""How far one NetTailor configuration's pruned models spread from one training seed to another.

A search judges each model by its validation accuracy against a target. On a small validation
split that judgement is noisy twice over: the binomial standard error of the accuracy itself,
and the spread of what the same hyper-parameters give from one training seed (data order,
initialisation of the proxies) to the next. This trains the same student ``--seeds`` times (the
spec's hyper-parameters, with ``--set`` overrides), prunes each with every K of ``--blocks``,
fine-tunes every pruning, and prints per K the validation and test accuracy of each seed, the
range over seeds, and the validation split's standard error at the target (sqrt(p (1 - p) / n)).

    .venv/bin/python benchmarks/finetune_spread.py [--seeds 0 1 2 3 4] [--blocks 2 4 6]
        [--set student_epochs=8 --set finetune_epochs=4 --set target.max_drop=3.0 ...]

The teacher comes from the search's teacher cache (``RAYTAILOR_CACHE``) when it is there, else
it is trained here first.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

from raytailor.nettailor.pipeline import run_nettailor
from raytailor.run import fit_teacher, prepare
from raytailor.search.shared import SharedTask
from raytailor.search.teacher_cache import load_teacher, teacher_key
from raytailor.spec import load_spec
from raytailor.train import evaluate

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "search_spaces" / "demo.yaml"
DEFAULT_SETS = ["student_epochs=8", "finetune_epochs=4", "target.max_drop=3.0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(DEMO))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--blocks", nargs="+", type=int, default=[2, 4, 6], help="the K each student is pruned with")
    parser.add_argument("--set", dest="sets", action="append", default=None, metavar="KEY=VALUE",
                        help=f"spec overrides (default: {' '.join(DEFAULT_SETS)})")
    args = parser.parse_args()
    spec = load_spec(args.spec, [*(DEFAULT_SETS if args.sets is None else args.sets),
                                 f"blocks_removed={args.blocks[0]}", f"prune_blocks={args.blocks}",
                                 "finetune_prunings=all"])
    prepared = prepare(spec, device="cpu")
    cached = load_teacher(teacher_key(spec))
    if cached is None:
        teacher = fit_teacher(prepared, verbose=False)
        teacher_val = evaluate(teacher, prepared.loader("val", batch_size=256))
    else:
        state, metrics = cached
        shared = SharedTask.from_prepared(prepared, teacher_state=state, teacher_metrics=metrics, teacher_key="")
        _, teacher = shared.materialise("cpu")
        teacher_val = metrics["val_accuracy"]
    target = teacher_val - spec.target.max_drop
    val_loader, test_loader = prepared.loader("val", batch_size=256), prepared.loader("test", batch_size=256)
    images = len(prepared.splits.val.labels)
    config = spec.method_config()
    print(f"teacher val {teacher_val:.2f} %, target {target:.2f} %; {images} validation images: one is "
          f"{100 / images:.2f} points, the standard error at the target "
          f"{100 * math.sqrt(target / 100 * (1 - target / 100) / images):.2f} points", flush=True)
    by_k: dict[int, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        torch.manual_seed(seed)
        outcome = run_nettailor(prepared.pretrained, teacher, config=config, image_size=spec.data.image_size,
                                train_loader=prepared.loader("train", batch_size=config.batch_size, train=True),
                                val_loader=val_loader, verbose=False)
        for pruning in outcome.prunings:
            val, test = evaluate(pruning.model, val_loader), evaluate(pruning.model, test_loader)
            by_k.setdefault(pruning.blocks_removed, []).append((val, test))
            print(f"seed {seed}  K {pruning.blocks_removed}  val {val:6.2f}  test {test:6.2f}"
                  f"{'  meets the target' if val >= target else ''}", file=sys.stderr, flush=True)
    print(f"{'K':>3} {'val median [range]':>24} {'test median [range]':>24} {'meets':>6}")
    for k in sorted(by_k):
        vals, tests = [v for v, _ in by_k[k]], [t for _, t in by_k[k]]
        print(f"{k:>3} {statistics.median(vals):8.2f} [{min(vals):.2f}, {max(vals):.2f}] "
              f"{statistics.median(tests):8.2f} [{min(tests):.2f}, {max(tests):.2f}] "
              f"{sum(v >= target for v in vals):>3}/{len(vals)}")


if __name__ == "__main__":
    main()
