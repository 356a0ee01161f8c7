"""Search overhead: how close a search comes to its ideal time, with and without worker reuse.

The ideal is the sum of the trials' own compute (Tune's ``time_total_s``) divided by the
concurrent slots. Two ratios per search:

- trial span / ideal: from the first trial's start to the last trial's end; what is lost
  between trials (a fresh worker process importing torch, ray.tune and raytailor per trial);
- command wall time / ideal: the whole ``raytailor search`` command (imports, Ray start,
  preparing the shared task, shutdown).

The variants run the same spec as separate commands, interleaved (reuse, fresh, fresh, reuse,
...), sharing one teacher cache that a warm-up run fills first. Prints the median and range of
each ratio over the rounds. ``--before TREE`` adds the variant "before": the default search
(workers reused) run by the raytailor of another source tree, e.g. an earlier commit's
(``git archive COMMIT | tar -x -C TREE``), so that a change is measured against the code
before it in the same rounds.

    .venv/bin/python benchmarks/search_overhead.py [--rounds 3] [--variants reuse fresh]
        [--before TREE] [--set student_epochs=3 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from search_command import run_search  # benchmarks/ is the script's folder

ROOT = Path(__file__).resolve().parent.parent
# the demo, shortened: 8 trials, 2 at a time, every one run to its end (overhead, not savings)
DEFAULT_SETS = ["student_epochs=3", "finetune_epochs=1", "search.early_stopping=none"]


def trial_times(out: Path) -> tuple[float, float]:
    """(sum of trial compute, span from the first trial's start to the last one's end)."""
    starts, ends, compute = [], [], 0.0
    for result in (out / "trials").glob("*/result.json"):
        last = json.loads(result.read_text().splitlines()[-1])
        compute += last["time_total_s"]
        ends.append(last["timestamp"])
        starts.append(last["timestamp"] - last["time_total_s"])
    return compute, max(ends) - min(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spec", default=str(ROOT / "search_spaces" / "demo.yaml"))
    parser.add_argument("--set", dest="sets", action="append", default=None, metavar="KEY=VALUE")
    parser.add_argument("--variants", nargs="+", choices=["reuse", "fresh"], default=["reuse", "fresh"],
                        help="reuse: workers reused (the default search); fresh: a new worker per trial")
    parser.add_argument("--before", type=Path, metavar="TREE",
                        help="also run the default search with the raytailor of this source tree")
    args = parser.parse_args()
    if args.before is not None and not (args.before / "raytailor" / "cli.py").is_file():
        raise SystemExit(f"--before {args.before}: no raytailor/cli.py there")
    variants = [*args.variants, *(["before"] if args.before is not None else [])]
    sets = DEFAULT_SETS if args.sets is None else args.sets
    import yaml

    slots = yaml.safe_load(Path(args.spec).read_text())["search"]["max_concurrent"]
    ratios: dict[str, dict[str, list[float]]] = {v: {"span": [], "command": []} for v in variants}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        run_search(Path(args.spec), root / "warmup", root / "cache", [*sets, "search.trials=2"])  # the teacher
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]
            for variant in order:
                out = root / f"{variant}-{round_}"
                flag = f"search.reuse_workers={'false' if variant == 'fresh' else 'true'}"
                wall = run_search(Path(args.spec).resolve(), out, root / "cache", [*sets, flag],
                                  tree=args.before.resolve() if variant == "before" else None)
                compute, span = trial_times(out)
                ideal = compute / slots
                ratios[variant]["span"].append(span / ideal)
                ratios[variant]["command"].append(wall / ideal)
                print(json.dumps({"round": round_, "variant": variant, "ideal_s": round(ideal, 1),
                                  "span_s": round(span, 1), "command_s": round(wall, 1)}), flush=True)
    for variant, by_kind in ratios.items():
        for kind, values in by_kind.items():
            print(f"{variant:>5} {kind:>7} / ideal: median {statistics.median(values):.2f} "
                  f"(range {min(values):.2f} .. {max(values):.2f}, {len(values)} rounds)")


if __name__ == "__main__":
    main()
