"""What a task bank saves: bytes on disk, resident memory of one serving process, task switch time.

N NetTailor models on one backbone (default: ResNet-34 at 224 px, tasks of 10, 37, 102 and 200
classes, K = 2, 4, 6, 8 blocks removed), each kept paths chosen from seeded random attention
and exported exactly as a tailor run exports (``save_tailored``: the compacted module). Their
task parts are untrained: sizes, memory and load times do not depend on what the weights hold.

1. Bytes: the bank against the sum of the exported models and against N fine-tuned teachers
   (the whole backbone per task: what fine-tuning each task would store).
2. Resident memory of a process serving every task: ``load_bank`` + ``bank.model`` for each,
   against ``load_tailored`` for each; measured in fresh processes (RSS after minus before
   loading), interleaved, median of ``--rounds`` with the range.
3. Switching tasks: building a task's module from a loaded bank against loading its folder
   with ``load_tailored``, interleaved in one process, median and range.

    .venv/bin/python benchmarks/task_bank.py [--arch resnet34] [--image-size 224] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = [10, 37, 102, 200]
REMOVED = [2, 4, 6, 8]


def make_tasks(root: Path, arch: str, image_size: int) -> tuple[list[Path], int]:
    """One tailor-run folder per task; returns them and the bytes of N fine-tuned teachers."""
    import torch

    from raytailor.backbones import create_backbone
    from raytailor.export import save_tailored
    from raytailor.nettailor.compaction import compact
    from raytailor.nettailor.graph import dense_paths
    from raytailor.nettailor.network import PathNetwork
    from raytailor.nettailor.pruning import select_survivors

    torch.manual_seed(0)
    backbone_state = create_backbone(arch, num_classes=1000).state_dict()  # the one pre-trained network
    runs, teachers = [], 0
    for k, (classes, removed) in enumerate(zip(CLASSES, REMOVED)):
        pretrained = create_backbone(arch, num_classes=classes)
        pretrained.load_state_dict({n: v for n, v in backbone_state.items() if not n.startswith("classifier.")},
                                   strict=False)
        teachers += sum(t.numel() * t.element_size() for t in pretrained.state_dict().values())
        student = PathNetwork(pretrained, dense_paths(pretrained.num_blocks, 3), image_size=image_size)
        draws = torch.rand(len(student.paths), generator=torch.Generator().manual_seed(k)).tolist()
        # blocks keep most attention (as trained students do); K removes the lowest of them
        last = pretrained.num_blocks
        alpha = [(3.0 if path.dst == last else 1.0 + d) if path.kind == "block" else d
                 for d, path in zip(draws, student.paths)]
        survivors = select_survivors(student.paths, alpha, theta=0.1, blocks_removed=removed, last_node=last)
        model = compact(student, survivors)
        run = root / f"task{k}"
        architecture = {"method": "nettailor", "arch": arch, "num_classes": classes,
                        "input": {"image_size": image_size, "mean": [0.5] * 3, "std": [0.25] * 3},
                        "paths": [p.to_list() for p in model.paths]}
        save_tailored(model, run / "model", architecture=architecture)
        (run / "result.json").write_text(json.dumps({"name": f"task{k}"}))
        runs.append(run)
    return runs, teachers


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def rss_child(kind: str, paths: list[str]) -> None:
    """Run in a fresh process: RSS added by loading every task (printed as one number)."""
    import torch  # noqa: F401  (imports before the first reading)

    import raytailor
    import raytailor.bank  # noqa: F401
    import raytailor.nettailor.method  # noqa: F401

    before = rss_bytes()
    if kind == "bank":
        bank = raytailor.load_bank(paths[0])
        models = [bank.model(name) for name in bank.tasks]
    else:
        models = [raytailor.load_tailored(path) for path in paths]
    print(rss_bytes() - before, len(models))


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet34")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1:])
        return
    root = Path(tempfile.mkdtemp(prefix="raytailor-bank-bench-"))
    try:
        measure(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(root: Path, args: argparse.Namespace) -> None:
    import raytailor
    from raytailor.bank import build_bank, format_listing

    runs, teachers = make_tasks(root, args.arch, args.image_size)
    listing = build_bank(runs, root / "bank")
    separate = sum((run / "model" / "weights.safetensors").stat().st_size for run in runs)
    bank_bytes = sum(p.stat().st_size for p in (root / "bank").iterdir())
    print(format_listing(listing))
    print(f"\n{args.arch} at {args.image_size} px, {len(runs)} tasks")
    print(f"bytes on disk: bank {bank_bytes / 1e6:.1f} MB | exported models {separate / 1e6:.1f} MB "
          f"({separate / bank_bytes:.2f}x the bank) | {len(runs)} fine-tuned teachers {teachers / 1e6:.1f} MB "
          f"({teachers / bank_bytes:.2f}x)")

    memory = {"bank": [], "separate": []}
    for _ in range(args.rounds):
        for kind in memory:
            paths = [str(root / "bank")] if kind == "bank" else [str(run / "model") for run in runs]
            done = subprocess.run([sys.executable, __file__, "--rss-child", kind, *paths], capture_output=True,
                                  text=True, check=True)
            memory[kind].append(int(done.stdout.split()[0]) / 1e6)
    ratios = [s / b for b, s in zip(memory["bank"], memory["separate"])]
    print(f"resident memory serving every task (MB): bank {_median(memory['bank'])} | each model loaded "
          f"{_median(memory['separate'])} | separate / bank {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f}) over {args.rounds} rounds")

    bank = raytailor.load_bank(root / "bank")
    switch = {"bank.model": [], "load_tailored": []}
    for _ in range(args.rounds):
        for k, name in enumerate(bank.tasks):
            started = time.perf_counter()
            bank.model(name)
            switch["bank.model"].append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            raytailor.load_tailored(runs[k] / "model")
            switch["load_tailored"].append((time.perf_counter() - started) * 1e3)
    print(f"switching to a task (ms, median and range over {args.rounds} rounds x {len(runs)} tasks): "
          f"bank.model {_median(switch['bank.model'])} | load_tailored {_median(switch['load_tailored'])}")


if __name__ == "__main__":
    main()
