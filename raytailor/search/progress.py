"""The live progress table printed while a search runs."""

from __future__ import annotations

from raytailor.spec import Spec


def progress_reporter(spec: Spec, metrics: list[str]):
    from ray.tune import CLIReporter

    columns = {m: m for m in metrics} | {"test_accuracy": "test_accuracy", "feasible": "feasible",
                                         "training_iteration": "epochs"}
    return CLIReporter(parameter_columns=list(spec.space), metric_columns=columns,
                       max_report_frequency=15, sort_by_metric=False)
