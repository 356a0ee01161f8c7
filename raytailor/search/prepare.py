"""Prepare a search once: data, backbone, teacher (as a Ray task, cached) -> SharedTask."""

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
    key = teacher_key(spec)
    cached = load_teacher(key)
    if cached is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and spec.device != "cpu" else 0
        if verbose:
            print(f"[prepare] training the teacher ({spec.teacher.epochs} epochs) as a Ray task"
                  f"{' on a GPU' if gpus else ''}", file=sys.stderr, flush=True)
        task = ray.remote(num_cpus=1, num_gpus=gpus)(_train_teacher)
        state, metrics = ray.get(task.remote(spec))
        store_teacher(key, state, metrics)
    else:
        state, metrics = cached
        if verbose:
            print(f"[prepare] reusing the cached teacher {key} (val {metrics['val_accuracy']:.2f}%)",
                  file=sys.stderr, flush=True)
    prepared = prepared or prepare(spec, device="cpu")  # a cluster's head node may have no GPU
    return SharedTask.from_prepared(prepared, teacher_state=state, teacher_metrics=metrics, teacher_key=key)
