"""Prepare a search once: data, backbone, teacher (as a Ray task, cached) -> SharedTask."""

from __future__ import annotations

import dataclasses
import sys

import ray
import torch

from raytailor.run import Prepared, fit_teacher, model_metrics, prepare, resolve_device
from raytailor.search.shared import SharedTask, to_numpy_state
from raytailor.search.teacher_cache import load_teacher, store_teacher, teacher_key
from raytailor.spec import Spec


def _train_teacher(prepared: Prepared) -> tuple[dict, dict]:
    """Runs in a Ray worker (on a GPU when the cluster has one) on the data the driver already
    loaded and decoded, which reaches it through the object store."""
    device = resolve_device(prepared.spec.device)
    prepared = dataclasses.replace(prepared, pretrained=prepared.pretrained.to(device), device=device)
    teacher = fit_teacher(prepared)
    return to_numpy_state(teacher), model_metrics(prepared, teacher, [teacher])


def prepare_shared(spec: Spec, *, verbose: bool = True) -> SharedTask:
    key = teacher_key(spec)
    cached = load_teacher(key)
    prepared = prepare(spec)  # data loaded and decoded once, here
    prepared.pretrained.cpu()
    prepared = dataclasses.replace(prepared, device=torch.device("cpu"))
    if cached is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and spec.device != "cpu" else 0
        if verbose:
            print(f"[prepare] training the teacher ({spec.teacher.epochs} epochs) as a Ray task"
                  f"{' on a GPU' if gpus else ''}", file=sys.stderr, flush=True)
        task = ray.remote(num_cpus=1, num_gpus=gpus)(_train_teacher)
        state, metrics = ray.get(task.remote(prepared))
        store_teacher(key, state, metrics)
    else:
        state, metrics = cached
        if verbose:
            print(f"[prepare] reusing the cached teacher {key} (val {metrics['val_accuracy']:.2f}%)",
                  file=sys.stderr, flush=True)
    return SharedTask.from_prepared(prepared, teacher_state=state, teacher_metrics=metrics, teacher_key=key)
