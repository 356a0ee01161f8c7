"""Search efficiency: what early stopping and one-student-many-prunings save, and what they find.

The same spec is searched five ways, as separate ``raytailor search`` commands:

- a: today's behaviour before issue 9: no early stopping, one pruning per student;
- b: one student, many prunings (``prune_blocks`` grid), no early stopping;
- c: early stopping (the default settings), one pruning per student;
- d: both;
- e: random sampling, full training, one pruning;
- f: (d) with ``finetune_prunings: leanest_first`` (fine-tune the prunings from the leanest up,
  until one reaches the target, probing the costliest after the first miss, none costlier
  than the teacher or the search's leanest feasible model; ``nettailor/finetune_order.py``);
- g: (f) given half of (a)'s compute: ``search.budget_epochs`` = (a)'s training epochs of the
  same task and seed // 2 (so (a) runs first in each round), less one epoch per concurrent
  trial (a running trial stops at the first epoch it reports beyond the budget, so a search
  may exceed its budget by that much); ``search.trials`` 16 so that the budget, not the
  number of trials, ends it;
- h: (g) with ``finetune_prunings: leanest_up`` (the walk from the leanest up, no probe);
- i: (g) with ``finetune_prunings: bisect`` (halving, the middle pruning of use first);
- j: (i) with every K from 0 to 6 in the grid (seven prunings per student, where halving takes
  at most three fine-tunes when accuracy grows with cost);
- k: (g) with every K from 0 to 6 in the grid (leanest first, the probe).

``--against FILE`` takes (a) from an earlier run's ``--json`` instead of running it again (the
budgets of (g) to (k) and every comparison use that round's (a)).

For each search: trial compute (the sum of the trials' own time, Tune's ``time_total_s``, and
the training epochs of all trials), the command's wall time, the leanest feasible model
(chosen on validation: its MACs and test accuracy) and the hypervolume of the feasible front
in (MACs, validation accuracy) with the reference point (the teacher's MACs, the accuracy
target), in accuracy points x MACs / teacher MACs (so 1.0 is a model as small as nothing with
1 point above the target). And the search's *anytime* cost: the training epochs (and
trial-seconds) all its trials had spent at the moment it first held a feasible model at least
as lean as (a)'s leanest of the same seed (a model is held once its trial has finished; the
moment is its trial's last report), and ``a_same_epochs``: the leanest feasible model (a) held
once it had spent as many training epochs as the search did (what (a) finds with its compute). Tasks: the demo (digits, 16 px) and synthetic shapes (12 classes,
2 of them unseen in the backbone's pre-training, another data seed), both offline, with the
targets and ranges in ``TASKS``; ``demo_val20`` (not run by default) is the demo with twice its
validation images, taken from its test split. Every seed
runs every task and variant (rotated order, one shared teacher cache filled first).

Prints, per task and variant, the median and range over seeds, and (d)/(a) ratios per seed,
each saying which leanest model is leaner than the teacher (one that is not is of no use: the
teacher meets the target by definition); writes every measurement as JSON (``--json``).

    .venv/bin/python benchmarks/search_efficiency.py [--seeds 0 1 2] [--tasks demo shapes]
        [--variants a b c d e] [--set student_epochs=8 --set finetune_epochs=4 ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from search_command import run_search  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "search_spaces" / "demo.yaml"
# Targets are looser than the demo's 1.5 points so that the shortened budget below leaves
# feasible models to compare (on shapes, 5 points left none in any variant); on shapes, proxies
# stay weak and removing 5 or more of the 9 blocks leaves no path at any sampled theta, so K
# stops at 4.
TASKS = {
    "demo": ["target.max_drop=3.0"],
    "shapes": ["data.dataset=synthetic", "data.num_classes=12", "data.samples_per_class=100", "data.seed=1",
               "target.max_drop=10.0", "space.blocks_removed.high=4"],
    # the demo with twice the validation images (360, taken from the test split, the training
    # split unchanged): at the target one image is 0.28 points, not 0.7 (benchmarks/finetune_spread.py)
    "demo_val20": ["target.max_drop=3.0", "data.val_fraction=0.2", "data.test_fraction=0.1"],
}
DEFAULT_TASKS = ["demo", "shapes"]
GRID = "prune_blocks=[0,2,4,6]"
FULL_GRID = "prune_blocks=[0,1,2,3,4,5,6]"
VARIANTS = {
    "a": ["search.early_stopping=none"],
    "b": ["search.early_stopping=none", GRID],
    "c": [],
    "d": [GRID],
    "e": ["search.early_stopping=none", "search.sampler=random"],
    "f": [GRID, "finetune_prunings=leanest_first"],
    "g": [GRID, "finetune_prunings=leanest_first", "search.trials=16"],  # + the budget: half of (a)'s
    "h": [GRID, "finetune_prunings=leanest_up", "search.trials=16"],  # + the budget: half of (a)'s
    "i": [GRID, "finetune_prunings=bisect", "search.trials=16"],  # + the budget: half of (a)'s
    "j": [FULL_GRID, "finetune_prunings=bisect", "search.trials=16"],  # + the budget: half of (a)'s
    "k": [FULL_GRID, "finetune_prunings=leanest_first", "search.trials=16"],  # + the budget: half of (a)'s
}
HALF_BUDGET = ("g", "h", "i", "j", "k")
CONCURRENT = 2  # the demo's search.max_concurrent
# the demo's budget, halved so that 2 tasks x 5 variants x 3 seeds fit in about an hour on 2 cores
DEFAULT_SETS = ["student_epochs=8", "finetune_epochs=4"]


def hypervolume(points: list[tuple[float, float]], *, reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (cost down, accuracy up) inside ``reference`` (max cost, min
    accuracy), costs divided by the reference cost."""
    max_cost, min_accuracy = reference
    inside = sorted((c / max_cost, a) for c, a in points if c <= max_cost and a >= min_accuracy)
    area, best = 0.0, min_accuracy
    for i, (cost, accuracy) in enumerate(inside):  # staircase from the cheapest model up
        best = max(best, accuracy)
        following = inside[i + 1][0] if i + 1 < len(inside) else 1.0
        area += (following - cost) * (best - min_accuracy)
    return area


def timelines(out: Path) -> dict[str, list[tuple[int, float, float]]]:
    """Per trial id: its reports' (timestamp, training epochs so far, trial-seconds so far)."""
    found = {}
    for result in (out / "trials").glob("*/result.json"):
        reports = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        found[reports[-1]["trial_id"]] = [(r["timestamp"], r.get("epochs", 0), r["time_total_s"]) for r in reports]
    return found


def spent_by(lines: dict[str, list[tuple[int, float, float]]], moment: int) -> tuple[float, float]:
    """(training epochs, trial-seconds) every trial had spent by ``moment``."""
    epochs = seconds = 0.0
    for reports in lines.values():
        done = [r for r in reports if r[0] <= moment]
        if done:
            epochs, seconds = epochs + max(r[1] for r in done), seconds + max(r[2] for r in done)
    return epochs, seconds


def anytime(measured: dict, macs: float | None) -> tuple[float | None, float | None]:
    """(epochs, trial-seconds) the search had spent when it first held a feasible model of at
    most ``macs``; (None, None) if it never did."""
    moments = [m for cost, m in measured["feasible_models"] if macs is not None and cost <= macs]
    if not moments:
        return None, None
    return spent_by(measured["timelines"], min(moments))


def held_after(measured: dict, epochs: float) -> float | None:
    """The leanest feasible model's MACs the search held once its trials had spent ``epochs``
    training epochs (a model is held from its trial's last report); None if none yet."""
    held = [cost for cost, moment in measured["feasible_models"]
            if spent_by(measured["timelines"], moment)[0] <= epochs]
    return min(held, default=None)


def measure(out: Path, wall: float) -> dict:
    from raytailor.trials_table import model_rows

    summary = json.loads((out / "summary.json").read_text())
    teacher = json.loads((out / "teacher.json").read_text())
    lines = timelines(out)
    compute = sum(reports[-1][2] for reports in lines.values())
    models = [r for r in model_rows(out) if r["status"] == "TERMINATED" and r["feasible"]]
    leanest = summary["leanest"]
    return {
        "timelines": lines,  # (cost, moment its trial ended) per feasible model: for ``anytime``
        "feasible_models": [(r["macs"], max(t for t, _, _ in lines[r.get("_trial") or r["trial_id"].split("-it")[0]]))
                            for r in models],
        "trial_seconds": compute, "epochs": summary["trained_epochs"], "wall": wall,
        "stopped": summary["stopped"], "models": summary["models"], "feasible": summary["feasible"],
        "leanest_macs": leanest["macs"] if leanest else None,
        "leanest_test_accuracy": leanest["test_accuracy"] if leanest else None,
        "hypervolume": hypervolume([(r["macs"], r["val_accuracy"]) for r in models],
                                   reference=(teacher["macs"], teacher["accuracy_target"])),
        "teacher_macs": teacher["macs"],
    }


def _spread(values: list[float | None], fmt: str) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "none"
    missing = f" ({len(values) - len(known)} none)" if len(known) < len(values) else ""
    return f"{statistics.median(known):{fmt}} ({min(known):{fmt}}-{max(known):{fmt}}){missing}"


def add_anytime(results: dict) -> None:
    """Each run's ``epochs_to_a`` / ``seconds_to_a``: ``anytime`` at (a)'s leanest of its seed;
    and ``a_same_epochs``: the leanest feasible model (a) held after as many epochs as the run
    spent (what (a) would have found with the run's compute)."""
    for by_variant in results.values():
        for by_seed in by_variant.values():
            for seed, measured in by_seed.items():
                a = by_variant.get("a", {}).get(seed)
                macs = a["leanest_macs"] if a else None
                measured["epochs_to_a"], measured["seconds_to_a"] = anytime(measured, macs)
                measured["a_same_epochs"] = held_after(a, measured["epochs"]) if a else None


def report(results: dict, variants: list[str]) -> None:
    columns = [("trial_seconds", ".0f"), ("epochs", ".0f"), ("wall", ".0f"), ("stopped", ".0f"),
               ("leanest_macs", ",.0f"), ("leanest_test_accuracy", ".2f"), ("hypervolume", ".2f"),
               ("epochs_to_a", ".0f"), ("seconds_to_a", ".0f"), ("a_same_epochs", ",.0f")]
    for task, by_variant in results.items():
        print(f"\n## {task}: median (range) over seeds {sorted(next(iter(by_variant.values())))}")
        print("| variant | " + " | ".join(name for name, _ in columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for variant in variants:
            runs = list(by_variant[variant].values())
            print(f"| {variant} | " + " | ".join(_spread([r[name] for r in runs], fmt) for name, fmt in columns) + " |")
        for other in [v for v in ("d", "f", *HALF_BUDGET) if v in by_variant and "a" in by_variant]:
            for seed in sorted(by_variant[other]):
                a, d = by_variant["a"][seed], by_variant[other][seed]
                if a["leanest_macs"] is None and d["leanest_macs"] is None:
                    lean = "neither found a feasible model"
                elif d["leanest_macs"] is not None and (a["leanest_macs"] is None
                                                        or d["leanest_macs"] <= a["leanest_macs"]):
                    lean = f"({other}) as lean or leaner"
                else:
                    lean = "(a) leaner"
                # a feasible model no leaner than the teacher is of no use: the teacher meets the target
                leaner = [v for v, r in (("a", a), (other, d)) if r["leanest_macs"] is not None
                          and r["leanest_macs"] < r["teacher_macs"]]
                lean += f"; leaner than the teacher: {' and '.join(f'({v})' for v in leaner) or 'neither'}"
                reached = ("never as lean as (a)'s leanest" if d["epochs_to_a"] is None else
                           f"as lean as (a)'s leanest after {d['epochs_to_a'] / a['epochs']:.2f} of (a)'s epochs, "
                           f"{d['seconds_to_a'] / a['trial_seconds']:.2f} of its trial-seconds")
                same = d["a_same_epochs"]
                print(f"seed {seed}: ({other})/(a) trial compute {d['trial_seconds'] / a['trial_seconds']:.2f}, "
                      f"epochs {d['epochs'] / a['epochs']:.2f}; {lean}; {reached}; after as many epochs "
                      f"({d['epochs']:.0f}) (a) held {'none' if same is None else f'{same:,.0f} MACs'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=DEFAULT_TASKS,
                        help=f"default: {' '.join(DEFAULT_TASKS)}")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--set", dest="sets", action="append", default=None, metavar="KEY=VALUE",
                        help=f"spec overrides for every search (default: {' '.join(DEFAULT_SETS)})")
    parser.add_argument("--json", help="write every measurement here")
    parser.add_argument("--cache", help="teacher cache to use and keep (default: a temporary one)")
    parser.add_argument("--keep", help="keep every search's folder here (default: a temporary folder)")
    parser.add_argument("--against", help="(a)'s measurements from an earlier --json, instead of running (a)")
    args = parser.parse_args()
    earlier = json.loads(Path(args.against).read_text()) if args.against else None
    if earlier is not None:
        missing = [f"{t} seed {s}" for t in args.tasks for s in args.seeds if str(s) not in earlier.get(t, {}).get("a", {})]
        if missing:
            parser.error(f"{args.against} has no (a) for {', '.join(missing)}")
        args.variants = [v for v in args.variants if v != "a"]
    elif any(v in args.variants for v in HALF_BUDGET) and "a" not in args.variants:
        parser.error("variants g, h, i, j and k are given half of variant a's epochs: run a too, or give --against")
    sets = DEFAULT_SETS if args.sets is None else args.sets
    results: dict = {task: {v: {} for v in args.variants} for task in args.tasks}
    if earlier is not None:  # JSON keys are strings: the seeds become ints again
        for task in args.tasks:
            results[task]["a"] = {int(s): m for s, m in earlier[task]["a"].items() if int(s) in args.seeds}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(args.keep or folder)
        root.mkdir(parents=True, exist_ok=True)
        cache = Path(args.cache) if args.cache else root / "cache"
        for task in args.tasks:  # the teachers, once
            run_search(DEMO, root / f"warmup-{task}", cache, [*TASKS[task], *sets, "search.trials=1",
                                                              "student_epochs=1", "finetune_epochs=0"])
        for round_, seed in enumerate(args.seeds):
            for task in args.tasks:
                shift = round_ % len(args.variants)
                order = args.variants[shift:] + args.variants[:shift]
                for half in [v for v in HALF_BUDGET if v in order and "a" in order]:  # after (a), whose
                    order.remove(half)  # epochs set their budget
                    order.insert(order.index("a") + 1, half)
                for variant in order:
                    out = root / f"{task}-{variant}-{seed}"
                    budget = ([f"search.budget_epochs={int(results[task]['a'][seed]['epochs']) // 2 - CONCURRENT}"]
                              if variant in HALF_BUDGET else [])
                    wall = run_search(DEMO, out, cache, [*TASKS[task], *sets, *VARIANTS[variant], *budget,
                                                            f"search.seed={seed}"])
                    results[task][variant][seed] = measure(out, wall)
                    brief = {k: v for k, v in results[task][variant][seed].items()
                             if k not in ("timelines", "feasible_models")}
                    print(f"[{task} {variant} seed {seed}] {json.dumps(brief)}", file=sys.stderr, flush=True)
    add_anytime(results)
    report(results, (["a"] if earlier is not None else []) + args.variants)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
