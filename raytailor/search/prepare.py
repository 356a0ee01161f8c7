"""Prepare a search once: data, backbone, teacher (as a Ray task, cached) -> SharedTask.

A multi-task search prepares every task here: the teachers that are not cached train side by
side as Ray tasks, and every task's frozen backbone tensors are the first task's arrays (one
copy in the object store for all of them).
"""

from __future__ import annotations

import sys

import ray

from raytailor.run import Prepared, fit_teacher, model_metrics, prepare
from raytailor.search.shared import SharedTask, to_numpy_state
from raytailor.search.teacher_cache import load_teacher, store_teacher, teacher_key
from raytailor.spec import Spec


def _train_teacher(spec: Spec) -> tuple[dict, dict]:
    """Runs in a Ray worker (on a GPU when the cluster has one)."""
    prepared = prepare(spec)
    teacher = fit_teacher(prepared)
    return to_numpy_state(teacher), model_metrics(prepared, teacher, [teacher])


def prepare_shared(spec: Spec, *, prepared: Prepared | None = None, verbose: bool = True) -> SharedTask:
    """The shared task; ``prepared``: the data and backbone already loaded in this process (on
    the CPU), else they are loaded here. The teacher comes from the cache or a Ray task."""
    return prepare_tasks({None: spec}, prepared={None: prepared} if prepared else None, verbose=verbose)[None]


def prepare_tasks(specs: dict, *, prepared: dict | None = None, verbose: bool = True) -> dict:
    """``{task: SharedTask}`` for ``{task: spec}``; ``prepared``: tasks already loaded in this
    process. Teachers missing from the cache train at once, side by side."""
    keys = {task: teacher_key(spec) for task, spec in specs.items()}
    teachers = {task: load_teacher(key) for task, key in keys.items()}
    gpus = 1 if any(t is None for t in teachers.values()) and ray.cluster_resources().get("GPU", 0) >= 1 else 0
    training = {}  # teacher key -> its Ray task: tasks whose teachers are the same train it once
    for task, spec in specs.items():
        label = "" if task is None else f" of {task}"
        if teachers[task] is None:
            on_gpu = gpus if spec.device != "cpu" else 0
            if verbose:
                print(f"[prepare] training the teacher{label} ({spec.teacher.epochs} epochs) as a Ray task"
                      f"{' on a GPU' if on_gpu else ''}", file=sys.stderr, flush=True)
            if keys[task] not in training:
                training[keys[task]] = ray.remote(num_cpus=1, num_gpus=on_gpu)(_train_teacher).remote(spec)
        elif verbose:
            print(f"[prepare] reusing the cached teacher{label} {keys[task]} "
                  f"(val {teachers[task][1]['val_accuracy']:.2f}%)", file=sys.stderr, flush=True)
    for key, ref in training.items():
        trained = ray.get(ref)
        store_teacher(key, *trained)
        teachers.update({task: trained for task in specs if keys[task] == key})
    shared: dict = {}
    for task, spec in specs.items():
        loaded = (prepared or {}).get(task) or prepare(spec, device="cpu")  # a head node may have no GPU
        state, metrics = teachers[task]
        shared[task] = SharedTask.from_prepared(loaded, teacher_state=state, teacher_metrics=metrics,
                                                teacher_key=keys[task])
        if len(shared) > 1:
            shared[task].share_backbone_with(next(iter(shared.values())))
    return shared
