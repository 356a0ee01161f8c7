"""What a multi-task search puts into Ray's object store: every task's data, fresh classifier
and teacher, and the frozen backbone once for all tasks, against each task holding its own.

Bytes, not time: the same on every machine. Counted as Ray stores them (pickle protocol 5,
each array's buffer out of band, once per array object; ``raytailor.search.shared.serialized_bytes``).
The tasks are synthetic (4, 8, 12 classes, 10 images a class, 32 px): the backbone and the
teachers are most of the bytes; a real task adds its images (uint8).

    .venv/bin/python benchmarks/multitask_bytes.py [--arch resnet34] [--tasks 3]
"""

import argparse

from raytailor.run import prepare
from raytailor.search.shared import SharedTask, serialized_bytes, to_numpy_state
from raytailor.spec import parse_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet34")
    parser.add_argument("--tasks", type=int, default=3, help="tasks (2 to 5)")
    args = parser.parse_args()
    tasks = {}
    for k in range(args.tasks):
        classes = 4 * (k + 1) if k < 3 else 12 - k  # the synthetic generator has 12 classes at most
        spec = parse_spec({"name": f"task{k}", "method": "nettailor", "backbone": {"arch": args.arch, "weights": "none"},
                           "data": {"dataset": "synthetic", "image_size": 32, "num_classes": classes,
                                    "samples_per_class": 10}, "device": "cpu"})
        prepared = prepare(spec)  # the same seeded initialisation stands in for pre-trained weights
        # a teacher is the whole network fine-tuned for the task: as many bytes as the backbone
        tasks[spec.name] = SharedTask.from_prepared(prepared, teacher_state=to_numpy_state(prepared.pretrained),
                                                    teacher_metrics={"val_accuracy": 0.0})
    separate = serialized_bytes(tasks)
    first = next(iter(tasks.values()))
    for task in list(tasks.values())[1:]:
        task.share_backbone_with(first)
    together = serialized_bytes(tasks)
    backbone = sum(a.nbytes for a in first.backbone_state.values())
    print(f"{args.arch}, {args.tasks} tasks: {together / 1e6:.1f} MB in the object store with the backbone once, "
          f"{separate / 1e6:.1f} MB with a backbone per task ({(separate - together) / 1e6:.1f} MB saved; "
          f"backbone {backbone / 1e6:.1f} MB, teachers {args.tasks} x that)")


if __name__ == "__main__":
    main()
