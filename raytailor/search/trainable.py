"""The Ray Tune function trainable: one tailoring run per trial, built from shared refs.

Per-epoch metrics go out through ``ray.tune.report`` (TensorBoard gets them, namespaced by
stage: ``student/loss``, ``finetune/val_accuracy``, ``student/attention_block_mean`` ...).
The last report carries the objectives (val_accuracy, test_accuracy, params, macs,
task_params), ``feasible``, and the exported model as the trial's checkpoint.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from raytailor.errors import RaytailorError, TailoringError
from raytailor.pareto import meets_target
from raytailor.run import run_method, save_run
from raytailor.search.shared import SharedTask


def final_metrics(metrics: dict[str, Any], accuracy_target: float) -> dict[str, Any]:
    import ray

    feasible = meets_target(metrics["val_accuracy"], accuracy_target)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}  # the
    # TransTailor chain (a list) stays in the checkpoint's result.json
    return {**scalars, "feasible": bool(feasible), "done": True,
            "node_id": ray.get_runtime_context().get_node_id()}


def tailoring_trial(config: dict[str, Any], shared: SharedTask) -> None:
    prepared, teacher = shared.materialise()
    values = {**shared.spec.hyperparameters(), **config}

    def on_epoch(stage: str, epoch: int, metrics: dict[str, float]) -> None:
        tune.report({f"{stage}/{key}": value for key, value in metrics.items()} | {"stage_epoch": epoch})

    try:
        run = run_method(prepared, teacher, values, on_epoch=on_epoch, verbose=False,
                         accuracy_target=shared.accuracy_target)
    except RaytailorError as error:  # e.g. pruning cut every path: a failed trial, said plainly
        raise TailoringError(str(error)) from None
    with tempfile.TemporaryDirectory() as folder:
        save_run(run, Path(folder))
        tune.report(final_metrics(run.metrics, shared.accuracy_target),
                    checkpoint=tune.Checkpoint.from_directory(folder))
