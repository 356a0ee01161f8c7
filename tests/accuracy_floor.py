"""The budget and margins of the accuracy-floor tests (tests/test_accuracy_floor.py).

Both methods run end to end on the shipped demo task (a ResNet-20 pre-trained on synthetic
shapes -> scikit-learn's digits at 16 px) at a budget the suite can afford. The margins, how far
below its teacher a tailored model may land, come from repeated runs of exactly this budget:

    .venv/bin/python tests/accuracy_floor.py --seeds 0 1 2 3 4 5

runs it over data seeds (each seed changes the split, the initialisations and the batch order)
and prints the teacher - tailored gaps in points, val and test, with their median and range.
The figures and the margins chosen from them are in MARGINS below and in the README. This is not
a test module (pytest collects test_*.py only); tests/test_accuracy_floor.py runs seed 0.
``--precision bf16`` runs every stage under bf16 autocast instead (``precision: bf16``);
``--bf16-gap`` runs the teacher and both methods both ways per seed and prints fp32 - bf16 in
points (BF16_MARGIN); ``benchmarks/gpu_check.py`` runs the same on a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = {"nettailor": ROOT / "search_spaces" / "demo.yaml",
         "transtailor": ROOT / "search_spaces" / "transtailor_demo.yaml"}

# One budget per method, applied to the shipped demo specs with --set.
TEACHER = ["teacher.epochs=8"]
BUDGET = {
    "nettailor": ["student_epochs=12", "finetune_epochs=6", "skips=2", "blocks_removed=2", "theta=0.05"],
    "transtailor": ["max_iterations=2", "classifier_epochs=2", "full_finetune_epochs=6", "factor_epochs=1",
                    "finetune_epochs=3", "prune_fraction=0.2", "tau=1.0"],
}

# Points below its teacher a tailored model may land, on val and on test. From 6 seeds of this
# budget (`.venv/bin/python tests/accuracy_floor.py`, 2 CPU cores), the teacher - tailored gap:
#   NetTailor    val median 1.40, range 0.70 .. 6.99   test median 2.09, range 1.11 .. 2.79
#   TransTailor  val median 0.70, range -0.70 .. 2.10  test median 0.42, range 0.00 .. 3.06
# Each margin is the worst gap seen, rounded up to the next half point, plus one point (1 val image
# is 0.70 points, 1 test image 0.28): a machine whose float reductions differ behaves like another
# seed. Digits has 10 classes (chance 10 %); these floors are far above a method that learned nothing.
MARGINS = {"nettailor": {"val": 8.0, "test": 4.0}, "transtailor": {"val": 3.5, "test": 4.5}}

# Points a bf16 run (the teacher and each method, every stage under bf16 autocast) may land
# below the same run in fp32: issue 11's bound. fp32 - bf16 over seeds 0-3 at this budget
# (`.venv/bin/python tests/accuracy_floor.py --bf16-gap --seeds 0 1 2 3`, 2 CPU cores): teacher
# val 0.00, 0.70, 0.70, -0.70 and test -0.28, -0.28, 0.00, -0.28; NetTailor val -2.10, 0.70,
# -0.70, 0.00 and test -0.56, 0.28, 1.11, -0.28; TransTailor val 0.70, -0.70, 0.00, -1.40 and
# test -0.28, -3.06, -0.28, 0.00. The test holds the bound on the test split (359 images, 0.28
# points each) and on the teacher's val; a tailored model's val (143 images, 0.70 points each)
# moves by 2 images between the two either way.
BF16_MARGIN = 1.5


def spec_for(method: str, seed: int, precision: str = "fp32", device: str = "cpu"):
    from raytailor.spec import load_spec

    return load_spec(SPECS[method], [*TEACHER, *BUDGET[method], f"data.seed={seed}", f"device={device}",
                                     f"precision={precision}"])


def teacher_for(seed: int, precision: str = "fp32", device: str = "cpu"):
    """Prepared demo task and its fine-tuned teacher (the same for both methods)."""
    from raytailor.run import fit_teacher, model_metrics, prepare

    prepared = prepare(spec_for("nettailor", seed, precision, device))
    teacher = fit_teacher(prepared, verbose=False)
    return prepared, teacher, model_metrics(prepared, teacher, [teacher])


def tailor(method: str, prepared, teacher) -> dict:
    """The method at BUDGET on ``prepared``'s task (in its precision, on its device); the chosen
    model's metrics."""
    from raytailor.run import run_method

    spec = prepared.spec
    prepared = dataclasses.replace(prepared, spec=spec_for(method, spec.data.seed, spec.precision, spec.device))
    return run_method(prepared, teacher, prepared.spec.hyperparameters(), verbose=False).metrics


def precision_runs(seed: int, *, device: str = "cpu", methods: tuple[str, ...] = tuple(SPECS)) -> dict:
    """In fp32 and in bf16: the teacher's and each of ``methods``' metrics, and the seconds they
    took, by model name."""
    runs = {}
    for precision in ("fp32", "bf16"):
        began = time.perf_counter()
        prepared, teacher, reference = teacher_for(seed, precision, device)
        runs[precision] = {"teacher": reference, **{m: tailor(m, prepared, teacher) for m in methods},
                           "seconds": round(time.perf_counter() - began, 1)}
    return runs


def bf16_gap(runs: dict) -> dict:
    """fp32 - bf16 in points (``precision_runs``): each model's val and test accuracy."""
    models = [name for name in runs["fp32"] if name != "seconds"]
    return {f"{model} {split}": round(runs["fp32"][model][f"{split}_accuracy"] - runs["bf16"][model][f"{split}_accuracy"], 2)
            for model in models for split in ("val", "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--bf16-gap", action="store_true", help="print fp32 - bf16 per seed instead")
    args = parser.parse_args()
    if args.bf16_gap:
        for seed in args.seeds:
            print(json.dumps({"seed": seed, **bf16_gap(precision_runs(seed))}), flush=True)
        return
    gaps: dict[str, dict[str, list[float]]] = {m: {"val": [], "test": []} for m in SPECS}
    for seed in args.seeds:
        started = time.perf_counter()
        prepared, teacher, reference = teacher_for(seed, args.precision)
        line = {"seed": seed, "teacher": {k: reference[k] for k in ("val_accuracy", "test_accuracy")},
                "teacher_s": round(time.perf_counter() - started, 1)}
        for method in SPECS:
            started = time.perf_counter()
            metrics = tailor(method, prepared, teacher)
            for split in ("val", "test"):
                gaps[method][split].append(reference[f"{split}_accuracy"] - metrics[f"{split}_accuracy"])
            line[method] = {"val": metrics["val_accuracy"], "test": metrics["test_accuracy"],
                            "macs": metrics["macs"], "s": round(time.perf_counter() - started, 1)}
        print(json.dumps(line), flush=True)
    for method, by_split in gaps.items():
        for split, values in by_split.items():
            print(f"{method} {split}: gap to teacher median {statistics.median(values):.2f} points, "
                  f"range {min(values):.2f} .. {max(values):.2f} over {len(values)} seeds "
                  f"(margin {MARGINS[method][split]})", file=sys.stderr)


if __name__ == "__main__":
    main()
