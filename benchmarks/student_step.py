"""NetTailor student training step vs teacher fine-tuning step, same batch, one process.

Both steps are the code the pipeline runs: ``fine_tuning_objective`` + SGD over every
parameter (teacher fine-tuning), and ``student_objective`` (teacher forward without autograd,
one student forward, CE + g1 E[C] + g2 Omega) + SGD over proxies/classifier/attention with the
BN-folded frozen modules ``train_paths`` uses. Rounds are interleaved and the median per-step
time of each is compared. Goal: ratio <= 1.1 (the public code's double forward costs ~1.7).

    .venv/bin/python benchmarks/student_step.py            # both configurations
    .venv/bin/python benchmarks/student_step.py --quick    # the small one only
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from raytailor.backbones import create_backbone
from raytailor.fold import folded_attributes, folded_copy
from raytailor.nettailor.pipeline import build_student, path_optimizer, student_objective
from raytailor.teacher import fine_tuning_objective
from raytailor.train import OptimConfig, sgd

CONFIGS = {
    "resnet20-32px-bs64": ("resnet20", 32, 64),
    "resnet34-224px-bs16": ("resnet34", 224, 16),  # the paper's setting
}


def time_steps(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def measure(arch: str, image_size: int, batch: int, *, rounds: int, steps: int) -> tuple[list[float], list[float]]:
    torch.manual_seed(0)
    pretrained = create_backbone(arch, num_classes=10)
    teacher = copy.deepcopy(pretrained).eval()
    student = build_student(pretrained, teacher, skips=3, image_size=image_size).train()
    fine_tuned = copy.deepcopy(pretrained).train()
    images = torch.randn(batch, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    optim = OptimConfig(epochs=1, lr=0.01)

    teacher_loss = fine_tuning_objective(fine_tuned)
    teacher_optimizer = sgd([{"params": list(fine_tuned.parameters())}], optim)
    student_loss = student_objective(student, folded_copy(teacher), gamma1=0.3, gamma2=10.0)
    student_optimizer = path_optimizer(student, optim)

    def step(loss_fn, optimizer):
        def run():
            loss = loss_fn(images, labels)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return run

    teacher_step, student_step = step(teacher_loss, teacher_optimizer), step(student_loss, student_optimizer)
    teacher_times, student_times = [], []
    with folded_attributes(student, ["stem", "blocks"]):
        time_steps(teacher_step, 2), time_steps(student_step, 2)  # warm-up
        for _ in range(rounds):
            teacher_times.append(time_steps(teacher_step, steps))
            student_times.append(time_steps(student_step, steps))
    return teacher_times, student_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the ResNet-20 configuration")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    names = ["resnet20-32px-bs64"] if args.quick else list(CONFIGS)
    print(f"{'configuration':<22} {'teacher step':>13} {'student step':>13} {'ratio (range over rounds)':>26}")
    for name in names:
        arch, size, batch = CONFIGS[name]
        steps = 5 if size <= 64 else 1
        teacher, student = measure(arch, size, batch, rounds=args.rounds, steps=steps)
        ratios = [s / t for s, t in zip(student, teacher)]  # each round's pair ran back to back
        print(f"{name:<22} {statistics.median(teacher) * 1000:>10.1f} ms {statistics.median(student) * 1000:>10.1f} ms "
              f"{statistics.median(ratios):>8.2f} ({min(ratios):.2f}-{max(ratios):.2f})", flush=True)


if __name__ == "__main__":
    main()
