"""Does an easier task get a leaner network? NetTailor's claim, on tasks of graded difficulty.

The tasks: the shipped handwritten digits restricted to their first 2, 4, 7 and 10 classes
(``data.num_classes``), every other setting as ``search_spaces/demo.yaml``: the same
pre-trained ResNet-20, the same search (trials, sampler, seed, space) and the same target rule
(teacher validation accuracy - ``max_drop``). For each task: the teacher's accuracy, and the
leanest feasible model the search found (selected on validation): blocks kept, task params,
MACs, accuracy. Then Spearman's rank correlation between difficulty (number of classes, and
the teacher's validation error) and the tailored size (MACs, task params).

By default fewer classes also means fewer training images (each class has ~180), so fewer
steps per epoch; ``--images`` gives every task the same number of images instead. The
teacher's error on an easy task is often 0 (ties). The table says what was measured, whichever
way it falls.

    .venv/bin/python benchmarks/task_difficulty.py [--trials 8] [--classes 2,4,7,10] [--out DIR]
    .venv/bin/python benchmarks/task_difficulty.py --images 360 --val-fraction 0.2   # equal-size tasks
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_command import run_search  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "search_spaces" / "demo.yaml"


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(x: list[float], y: list[float]) -> float | None:
    """Pearson's correlation of the ranks (None when either side is constant)."""
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="2,4,7,10", help="comma-separated class counts, one task each")
    parser.add_argument("--trials", type=int, default=8, help="search.trials for every task")
    parser.add_argument("--images", type=int,
                        help="give every task this many images (samples_per_class = images // classes), so an "
                             "epoch is the same number of steps whatever the classes; default: all (~180 per class)")
    parser.add_argument("--val-fraction", type=float, help="data.val_fraction for every task (default: the demo's)")
    parser.add_argument("--out", help="where the searches go (default: a temporary folder)")
    parser.add_argument("--cache", help="teacher cache folder (default: inside --out)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="raytailor-difficulty-"))
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    base = yaml.safe_load(DEMO.read_text())
    rows = []
    for classes in [int(c) for c in args.classes.split(",")]:
        name = f"digits{classes}"
        data = {**base["data"], "num_classes": classes}
        if args.images:
            data["samples_per_class"] = args.images // classes
        if args.val_fraction:
            data["val_fraction"] = args.val_fraction
        spec = {**base, "name": name, "data": data,
                "backbone": {**base["backbone"]}, "search": {**base["search"], "trials": args.trials}}
        spec_path = out / f"{name}.yaml"
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
        folder = out / name
        if not (folder / "summary.json").is_file():
            print(f"[difficulty] searching {name} ({args.trials} trials) -> {folder}", file=sys.stderr, flush=True)
            run_search(spec_path, folder, cache, [])
        summary = json.loads((folder / "summary.json").read_text())
        teacher, best = summary["teacher"], summary["leanest"]
        rows.append({
            "task": name, "classes": classes, "teacher_val": teacher["val_accuracy"],
            "teacher_test": teacher["test_accuracy"], "teacher_error": 100.0 - teacher["val_accuracy"],
            "teacher_macs": teacher["macs"],
            **({"blocks_kept": best.get("blocks_kept"), "task_params": best["task_params"], "params": best["params"],
                "macs": best["macs"], "val": best["val_accuracy"], "test": best["test_accuracy"]} if best else {}),
        })
    _blocks_from_models(out, rows)
    print("| task | classes | teacher val / test | leanest feasible: blocks kept | task params | MACs "
          "(of teacher) | val / test |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "macs" not in r:
            print(f"| {r['task']} | {r['classes']} | {r['teacher_val']:.2f} / {r['teacher_test']:.2f} % | "
                  "no feasible model | | | |")
            continue
        print(f"| {r['task']} | {r['classes']} | {r['teacher_val']:.2f} / {r['teacher_test']:.2f} % | "
              f"{r['blocks_kept']} | {r['task_params']:,} | {r['macs']:,} ({r['macs'] / r['teacher_macs']:.0%}) | "
              f"{r['val']:.2f} / {r['test']:.2f} % |")
    found = [r for r in rows if "macs" in r]
    for difficulty in ("classes", "teacher_error"):
        for size in ("macs", "task_params"):
            rho = spearman([r[difficulty] for r in found], [r[size] for r in found]) if len(found) >= 3 else None
            print(f"Spearman rho({difficulty}, {size}) = " + ("undefined (a constant side)" if rho is None
                                                              else f"{rho:+.2f}") + f" over {len(found)} tasks")
    (out / "difficulty.json").write_text(json.dumps(rows, indent=2))
    print(f"rows: {out / 'difficulty.json'}")


def _blocks_from_models(out: Path, rows: list[dict]) -> None:
    """Blocks kept by each leanest model, read from its exported architecture (the tables do not
    carry it)."""
    for r in rows:
        if "macs" not in r or r.get("blocks_kept") is not None:
            continue
        leanest = json.loads((out / r["task"] / "summary.json").read_text())["leanest"]
        result = out / r["task"] / "models" / leanest["trial_id"] / "result.json"
        if result.is_file():
            r["blocks_kept"] = json.loads(result.read_text()).get("blocks_kept")


if __name__ == "__main__":
    main()
