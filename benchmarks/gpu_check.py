"""The GPU check: what raytailor's training does on a CUDA device, in one run of a few minutes.

Needs only PyTorch, torchvision, numpy, PyYAML, safetensors and this source tree (no Ray, no
Optuna); torch-pruning (a small pure-Python wheel) for the TransTailor step, which is skipped
with a note without it. On the device machine:

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu_check.json

Prints and writes (JSON):

1. the device, and its dense bf16 peak where known;
2. student step / teacher step for ResNet-34 at 224 px and for the demo ResNet-20 at 32 px,
   bf16 autocast + channels_last: milliseconds per step (CUDA events, median of interleaved
   rounds with the range), achieved TFLOP/s (FLOPs of one step counted by
   ``torch.utils.flop_counter``) and MFU against the bf16 peak;
3. host syncs: one ``fit`` epoch of the student under ``torch.cuda.set_sync_debug_mode`` (the
   count of synchronising calls the loop made, which should be a few per epoch, not per step);
4. 1, 2 and 4 training processes sharing the GPU (what fractional Ray trials are): images/s per
   process and in total, and each process's peak memory;
5. a CUDA forward of every backbone, one NetTailor pruning (compaction + a fine-tune step) and
   one TransTailor pruning step (factors, importance, surgery), each ok or its error;
6. the shipped demo task tailored on the device in fp32 and in bf16 (``precision``), at the
   accuracy-floor budget of ``tests/accuracy_floor.py`` (teacher 8 epochs, NetTailor 12 + 6,
   with ``--quick`` too): the teacher's and the tailored model's val and test accuracy both
   ways, fp32 - bf16 in points (issue 11: bf16 within 1.5 points), and the seconds each took.

``--device cpu --quick`` runs the same code small on a CPU, to check the script itself.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets
BF16_PEAK = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
CONFIGS = {"resnet34-224px": ("resnet34", 224, 64), "resnet20-32px": ("resnet20", 32, 256)}
QUICK = {"resnet20-16px": ("resnet20", 16, 16)}


def peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def _setup(arch: str, size: int, batch: int, device: torch.device):
    """The teacher fine-tuning step and the NetTailor student step, as the pipeline runs them."""
    from raytailor.backbones import create_backbone
    from raytailor.fold import folded_copy
    from raytailor.nettailor.pipeline import build_student, path_optimizer, student_objective
    from raytailor.teacher import fine_tuning_objective
    from raytailor.train import OptimConfig, sgd

    torch.manual_seed(0)
    pretrained = create_backbone(arch, num_classes=10).to(device).to(memory_format=torch.channels_last)
    teacher = copy.deepcopy(pretrained).eval()
    student = build_student(pretrained, teacher, skips=3, image_size=size).train()
    fine_tuned = copy.deepcopy(pretrained).train()
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,), device=device)
    optim = OptimConfig(epochs=1, lr=0.01)
    teacher_loss = fine_tuning_objective(fine_tuned)
    teacher_opt = sgd([{"params": list(fine_tuned.parameters())}], optim)
    student_loss = student_objective(student, folded_copy(teacher), gamma1=0.3, gamma2=10.0)
    student_opt = path_optimizer(student, optim)

    def step(loss_fn, optimizer):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = loss_fn(images, labels)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return run

    return student, step(teacher_loss, teacher_opt), step(student_loss, student_opt)


def _timed(step, steps: int, device: torch.device) -> float:
    """Seconds per step, measured on the device clock (CUDA events) or the host clock (CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000 / steps
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - began) / steps


def _flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def step_ratio(name: str, device: torch.device, rounds: int, steps: int, peak: float | None) -> dict:
    from raytailor.fold import folded_attributes

    arch, size, batch = (CONFIGS | QUICK)[name]
    student, teacher_step, student_step = _setup(arch, size, batch, device)
    result = {"configuration": name, "batch": batch}
    with folded_attributes(student, ["stem", "blocks"]):
        for step in (teacher_step, student_step):  # warm-up (cuDNN autotuning, allocator)
            _timed(step, 3, device)
        flops = {"teacher": _flops(teacher_step), "student": _flops(student_step)}
        times = {"teacher": [], "student": []}
        for _ in range(rounds):
            times["teacher"].append(_timed(teacher_step, steps, device))
            times["student"].append(_timed(student_step, steps, device))
    for side in ("teacher", "student"):
        median = statistics.median(times[side])
        tflops = flops[side] / median / 1e12
        result[side] = {"ms": round(median * 1000, 3), "range_ms": [round(min(times[side]) * 1000, 3),
                                                                    round(max(times[side]) * 1000, 3)],
                        "tflops": round(tflops, 2), "mfu": round(tflops / peak, 4) if peak else None}
    ratios = [s / t for s, t in zip(times["student"], times["teacher"])]
    result["ratio"] = round(statistics.median(ratios), 3)
    result["ratio_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    return result


def host_syncs(device: torch.device) -> dict:
    """Synchronising calls made by one student epoch of ``fit`` (CUDA only)."""
    if device.type != "cuda":
        return {"skipped": "CUDA only"}
    from raytailor.backbones import create_backbone
    from raytailor.data import TensorLoader, TensorSplit
    from raytailor.nettailor.pipeline import build_student, train_paths
    from raytailor.train import OptimConfig

    pretrained = create_backbone("resnet20", num_classes=10).to(device)
    student = build_student(pretrained, copy.deepcopy(pretrained).eval(), skips=3, image_size=32)
    split = TensorSplit(torch.randint(0, 256, (1024, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (1024,)))
    loader = TensorLoader(split, batch_size=128, mean=(0.5,) * 3, std=(0.25,) * 3, device=device)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_paths(student, copy.deepcopy(pretrained).eval(), stage="student", gamma1=0.3, gamma2=10.0,
                        optim=OptimConfig(1, 0.1), train_loader=loader, val_loader=None, on_epoch=None,
                        verbose=False)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
    return {"steps": len(loader), "synchronising_calls": len(syncs), "first": syncs[:5]}


def _worker(device_name: str, seconds: float, queue) -> None:
    device = torch.device(device_name)
    _, _, student_step = _setup("resnet20", 32, 256, device)
    for _ in range(3):
        student_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    steps, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        student_step()
        steps += 1
        if device.type == "cuda" and steps % 10 == 0:
            torch.cuda.synchronize()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - began
    memory = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    queue.put({"images_per_s": steps * 256 / elapsed, "peak_mib": memory})


def concurrency(device: torch.device, seconds: float, counts: list[int]) -> list[dict]:
    context = mp.get_context("spawn")
    rows = []
    for count in counts:
        queue = context.Queue()
        workers = [context.Process(target=_worker, args=(str(device), seconds, queue)) for _ in range(count)]
        for w in workers:
            w.start()
        results = [queue.get() for _ in workers]
        for w in workers:
            w.join()
        per_process = [r["images_per_s"] for r in results]
        rows.append({"processes": count, "images_per_s_each": [round(v) for v in per_process],
                     "images_per_s_total": round(sum(per_process)),
                     "peak_mib_each": [round(r["peak_mib"]) if r["peak_mib"] else None for r in results]})
    base = rows[0]["images_per_s_total"]
    for row in rows:
        row["total_vs_one"] = round(row["images_per_s_total"] / base, 2)
    return rows


def _attempt(name: str, run) -> dict:
    try:
        return {"check": name, "ok": True, **(run() or {})}
    except Exception as error:  # the check reports every failure and goes on
        return {"check": name, "ok": False, "error": f"{type(error).__name__}: {error}",
                "where": traceback.format_exc().splitlines()[-3].strip()}


def components(device: torch.device, quick: bool) -> list[dict]:
    from raytailor.backbones import create_backbone, list_backbones

    sizes = {"resnet20": 32, "wrn26": 64}
    checks = []
    for arch in (["resnet20"] if quick else list_backbones()):
        def forward(arch=arch):
            size = sizes.get(arch, 224)
            network = create_backbone(arch, num_classes=10).to(device).eval()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
                out = network(torch.randn(2, 3, size, size, device=device))
            return {"output": list(out.shape)}
        checks.append(_attempt(f"forward {arch}", forward))

    def nettailor():
        from raytailor.nettailor.compaction import compact
        from raytailor.nettailor.pipeline import build_student
        from raytailor.nettailor.pruning import select_survivors

        pretrained = create_backbone("resnet20", num_classes=10).to(device)
        student = build_student(pretrained, copy.deepcopy(pretrained).eval(), skips=3, image_size=32)
        alpha = student.attention_weights().detach().cpu().tolist()
        tailored = compact(student, select_survivors(student.paths, alpha, theta=0.0, blocks_removed=3,
                                                     last_node=student.num_nodes))
        loss = torch.nn.functional.cross_entropy(tailored(torch.randn(8, 3, 32, 32, device=device)),
                                                 torch.randint(0, 10, (8,), device=device))
        loss.backward()
        return {"paths": len(tailored.paths)}

    def transtailor():
        import torch.nn.functional as F

        from raytailor.data import TensorLoader, TensorSplit
        from raytailor.transtailor.gates import attach_scales
        from raytailor.transtailor.importance import filter_importance
        from raytailor.transtailor.surgery import prune_lowest

        network = create_backbone("resnet20", num_classes=10).to(device)
        scales = attach_scales(network)
        split = TensorSplit(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (64,)))
        loader = TensorLoader(split, batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, device=device)
        betas = filter_importance(network, scales, loader, F.cross_entropy)
        pruned = prune_lowest(network, scales, betas, image_size=32, filters=8)
        return {"channels_removed": pruned.channels_removed}

    checks.append(_attempt("NetTailor pruning + fine-tune step", nettailor))
    try:
        import torch_pruning  # noqa: F401
        checks.append(_attempt("TransTailor pruning step", transtailor))
    except ImportError:
        checks.append({"check": "TransTailor pruning step", "ok": None, "error": "skipped: torch-pruning not installed"})
    return checks


def bf16_against_fp32(device: torch.device) -> dict:
    """The demo's teacher and NetTailor trained on ``device`` in fp32 and in bf16 at the budget
    of tests/accuracy_floor.py (its ``precision_runs``; the same budget with ``--quick``):
    their val and test accuracy, the seconds each precision took, fp32 - bf16 in points."""
    sys.path.insert(0, str(ROOT / "tests"))
    import accuracy_floor

    runs = accuracy_floor.precision_runs(0, device=str(device), methods=("nettailor",))
    return {"accuracy": {precision: {f"{model} {split}": run[model][f"{split}_accuracy"]
                                     for model in ("teacher", "nettailor") for split in ("val", "test")}
                         for precision, run in runs.items()},
            "seconds": {precision: run["seconds"] for precision, run in runs.items()},
            "fp32_minus_bf16": accuracy_floor.bf16_gap(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes (checks the script, e.g. on a CPU)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=20.0, help="per concurrency measurement")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_tflops(name)
    report = {"device": name, "torch": torch.__version__, "bf16_peak_tflops": peak}
    print(json.dumps(report), flush=True)
    steps = 2 if args.quick else 20
    report["steps"] = [step_ratio(n, device, 3 if args.quick else args.rounds, steps, peak)
                       for n in (QUICK if args.quick else CONFIGS)]
    for row in report["steps"]:
        print(json.dumps(row), flush=True)
    report["host_syncs"] = host_syncs(device)
    print(json.dumps({"host_syncs": report["host_syncs"]}), flush=True)
    report["concurrency"] = concurrency(device, 3.0 if args.quick else args.seconds, [1, 2] if args.quick else [1, 2, 4])
    for row in report["concurrency"]:
        print(json.dumps(row), flush=True)
    report["components"] = components(device, args.quick)
    for row in report["components"]:
        print(json.dumps(row), flush=True)
    report["precision"] = _attempt("demo tailored in fp32 and bf16", lambda: bf16_against_fp32(device))
    print(json.dumps(report["precision"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
