"""One tailoring run with fixed hyper-parameters (``raytailor tailor``); no Ray.

prepare data + backbone -> teacher -> method -> metrics on the exported module -> files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from raytailor.backbones import BlockNetwork, create_backbone
from raytailor.cost import count_params, image_macs
from raytailor.data import Splits, TensorLoader, default_flip, load_splits
from raytailor.module_on_disk import ModuleOnDisk, loaded
from raytailor.spec import Spec
from raytailor.teacher import train_teacher
from raytailor.train import EpochCallback, OptimConfig, evaluate, precision_scope, resolve_precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class Prepared:
    """What every run (and every search trial) shares: data, pre-trained backbone, device."""

    spec: Spec
    splits: Splits
    pretrained: BlockNetwork
    device: torch.device

    @property
    def precision(self) -> str:
        """The spec's precision on this device (``auto`` resolved)."""
        return resolve_precision(self.spec.precision, self.device)

    def loader(self, split: str, *, batch_size: int, train: bool = False) -> TensorLoader:
        data = self.spec.data
        flip = default_flip(data.dataset) if data.flip is None else data.flip
        return TensorLoader(
            getattr(self.splits, split), batch_size=batch_size, mean=self.splits.mean,
            std=self.splits.std, shuffle=train, augment=train and data.augment, flip=train and flip,
            device=self.device, seed=data.seed,
        )


def load_data(spec: Spec) -> Splits:
    """The spec's train / val / test splits (a relative data.root is relative to the spec)."""
    data = spec.data
    root = data.root
    if root is not None and not Path(root).expanduser().is_absolute():
        root = str(Path(spec.base_dir) / root)
    return load_splits(
        dataset=data.dataset, root=root, image_size=data.image_size, val_fraction=data.val_fraction,
        test_fraction=data.test_fraction, seed=data.seed, download=data.download,
        num_classes=data.num_classes, samples_per_class=data.samples_per_class,
    )


def prepare(spec: Spec, *, device: str | None = None) -> Prepared:
    """Data and pre-trained backbone (on ``device``, default the spec's); loading them is also
    what checks them (a ``DataError`` / ``BackboneError`` in one line)."""
    splits = load_data(spec)
    torch.manual_seed(spec.data.seed)  # the new classifier's initialisation
    device = resolve_device(device or spec.device)
    pretrained = create_backbone(
        spec.backbone.arch, num_classes=splits.num_classes, weights=spec.backbone.weights,
        base_dir=Path(spec.base_dir),
    )
    return Prepared(spec=spec, splits=splits, pretrained=pretrained.to(device), device=device)


def fit_teacher(prepared: Prepared, *, verbose: bool = True) -> BlockNetwork:
    t = prepared.spec.teacher
    torch.manual_seed(prepared.spec.data.seed)
    with precision_scope(prepared.precision, prepared.device):
        return train_teacher(
            prepared.pretrained,
            train_loader=prepared.loader("train", batch_size=t.batch_size, train=True),
            val_loader=prepared.loader("val", batch_size=256),
            config=OptimConfig(t.epochs, t.lr, t.momentum, t.weight_decay), verbose=verbose,
        )


def model_metrics(prepared: Prepared, model: nn.Module, task_modules: list[nn.Module]) -> dict[str, Any]:
    """Accuracy (percent) on val and test, and costs counted on ``model`` itself."""
    return {
        "val_accuracy": evaluate(model, prepared.loader("val", batch_size=256)),
        "test_accuracy": evaluate(model, prepared.loader("test", batch_size=256)),
        "params": count_params(model),
        "macs": image_macs(model, prepared.spec.data.image_size),
        "task_params": count_params(task_modules),
    }


def input_description(prepared: Prepared) -> dict[str, Any]:
    return {
        "image_size": prepared.spec.data.image_size, "mean": list(prepared.splits.mean),
        "std": list(prepared.splits.std), "class_names": list(prepared.splits.class_names),
        "data": data_record(prepared.spec),
    }


def data_record(spec: Spec) -> dict[str, Any]:
    """The spec's data section with its root made absolute: what ``evaluate`` needs to load the
    same splits again from the model folder alone (``download`` off: evaluating never fetches)."""
    record = dataclasses.asdict(spec.data)
    if record["root"] is not None:
        record["root"] = str((Path(spec.base_dir) / Path(record["root"]).expanduser()).resolve())
    return {**record, "download": False}


@dataclass
class TailoredRun:
    """A finished tailoring: the exported-to-be module, its metrics and its description."""

    model: nn.Module | ModuleOnDisk  # the chosen run's is always a module
    metrics: dict[str, Any]
    architecture: dict[str, Any]
    hyperparameters: dict[str, Any]
    # the other sub-models worth keeping (see run_method), saved beside the model
    submodels: list[TailoredRun] = dataclasses.field(default_factory=list)


def run_method(
    prepared: Prepared, teacher: BlockNetwork, values: dict[str, Any], *,
    on_epoch: EpochCallback | None = None, verbose: bool = True, accuracy_target: float | None = None,
    leaner_than: Callable[[], float] | None = None, go_on: Callable[[], bool] | None = None,
) -> TailoredRun:
    """Tailor with hyper-parameter ``values``; ``tailor`` and every search trial run exactly this.

    The method yields its sub-models (``raytailor.methods``); each is measured on the module
    itself (val, test, params, MACs), reported as one step of the ``submodels`` stage, and listed
    in ``metrics["submodels"]``. The chosen one is the method's own pick if it makes one
    (TransTailor's tau), else the leanest that meets ``accuracy_target`` on validation (the most
    accurate if none does). Besides it, ``submodels`` keeps those on the run's own front over the
    spec's objectives that meet the target: one off that front cannot be on a search's front
    for those objectives, nor can an infeasible one. ``leaner_than``: the cost (the spec's
    ``leanest_cost``) a sub-model must not exceed to be of use; ``go_on``: whether the method may
    train sub-models past those it has ready (both ``methods.Goal``)."""
    from raytailor.methods import CUT_SHORT, SUBMODELS_STAGE, Goal, get_method
    from raytailor.pareto import leanest, leanest_cost, mark_front, meets_target

    spec = prepared.spec
    method = get_method(spec.method)
    config = spec.method_config(values)
    cost = leanest_cost(spec.objectives)
    goal = None if accuracy_target is None else Goal(accuracy_target, cost, leaner_than, go_on)
    torch.manual_seed(spec.data.seed)
    with precision_scope(prepared.precision, prepared.device):  # measured below in fp32, as exported
        outcome = method.tailor(
            prepared.pretrained, teacher, config, image_size=spec.data.image_size,
            train_loader=prepared.loader("train", batch_size=config.batch_size, train=True),
            val_loader=prepared.loader("val", batch_size=256), report=on_epoch, verbose=verbose, goal=goal,
        )
    hyperparameters = dataclasses.asdict(config)
    runs = []
    for k, candidate in enumerate(outcome.candidates):
        module = loaded(candidate.model).to(prepared.device)
        task_modules = [module] if candidate.task_modules is None else candidate.task_modules
        metrics = {**model_metrics(prepared, module, task_modules), "submodel": k, **candidate.details,
                   "own_hyperparameters": candidate.params}
        module.cpu()  # one sub-model at a time on the accelerator
        if on_epoch is not None:
            on_epoch(SUBMODELS_STAGE, k, {key: float(metrics[key]) for key in ("val_accuracy", "macs", "params")})
        # a sub-model kept on disk stays there (only its handle is held) until it is saved
        runs.append(TailoredRun(candidate.model if isinstance(candidate.model, ModuleOnDisk) else module, metrics,
                                _architecture(prepared, candidate.architecture), {**hyperparameters, **candidate.params}))
        del module
    rows = mark_front([{**r.metrics, "status": "TERMINATED",
                        "feasible": meets_target(r.metrics["val_accuracy"], accuracy_target)}
                       for r in runs], spec.objectives)
    if outcome.chosen is not None:
        chosen = runs[outcome.chosen]
    else:
        pick = leanest(rows, cost=cost)
        chosen = runs[pick["submodel"]] if pick else max(runs, key=lambda r: r.metrics["val_accuracy"])
    records = [{**r.metrics, "kept": row["on_front"] or r is chosen} for r, row in zip(runs, rows)]
    chosen.metrics = {**chosen.metrics, **outcome.details, "chosen_submodel": chosen.metrics["submodel"],
                      CUT_SHORT: outcome.cut_short, "submodels": records}
    chosen.submodels = [r for r, record in zip(runs, records) if record["kept"] and r is not chosen]
    chosen.model = loaded(chosen.model).to(prepared.device)
    return chosen


def _architecture(prepared: Prepared, specific: dict[str, Any]) -> dict[str, Any]:
    spec = prepared.spec
    return {"method": spec.method, "arch": spec.backbone.arch, "num_classes": prepared.splits.num_classes,
            "input": input_description(prepared), **specific}


def submodel_dir(run_dir: Path, iteration: int, *, chosen: bool = False) -> Path:
    """Where ``save_run`` puts sub-model ``iteration`` (a run folder of its own); the chosen
    sub-model is the run itself."""
    return run_dir if chosen else run_dir / "submodels" / f"it{iteration}"


def save_run(run: TailoredRun, out_dir: Path, **extra: Any) -> dict[str, Any]:
    """Write ``out_dir/model`` and ``out_dir/result.json`` (and each kept sub-model as
    ``out_dir/submodels/it<k>/`` with the same layout); return the result."""
    from raytailor.export import save_tailored

    save_tailored(loaded(run.model), out_dir / "model", architecture=run.architecture)
    result = {**run.metrics, "hyperparameters": run.hyperparameters, **extra}
    (out_dir / "result.json").write_text(json.dumps(result, indent=2))
    shutil.rmtree(out_dir / "submodels", ignore_errors=True)  # none left from an earlier run here
    for sub in run.submodels:
        save_run(sub, submodel_dir(out_dir, sub.metrics["submodel"]))
    return result


def tailor(spec: Spec, out_dir: str | Path, *, verbose: bool = True) -> dict[str, Any]:
    """Run teacher -> method with ``spec.hyperparameters()``; write result.json and model/."""
    from raytailor.pareto import leanest_cost
    from raytailor.preflight import check_device, check_hyperparameters, check_output

    started = time.perf_counter()
    out_dir = Path(out_dir)
    # everything that can be refused is refused before anything is written or trained
    check_output(out_dir)
    check_device(spec)
    spec.method_config()
    prepared = prepare(spec)
    check_hyperparameters(spec, prepared.pretrained)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "spec.yaml").write_text(dump_spec(spec))
    teacher = fit_teacher(prepared, verbose=verbose)
    teacher_metrics = model_metrics(prepared, teacher, [teacher])  # fine-tuning: all params are the task's
    accuracy_target = teacher_metrics["val_accuracy"] - spec.target.max_drop
    teacher_cost = teacher_metrics[leanest_cost(spec.objectives)]  # a costlier model is of no use
    run = run_method(prepared, teacher, spec.hyperparameters(), verbose=verbose, accuracy_target=accuracy_target,
                     leaner_than=lambda: teacher_cost)
    result = save_run(
        run, out_dir, name=spec.name, method=spec.method, backbone=spec.backbone.arch,
        image_size=spec.data.image_size, teacher=teacher_metrics, accuracy_target=accuracy_target,
        seconds=round(time.perf_counter() - started, 1),
    )
    if verbose:
        metrics = run.metrics
        print(
            f"[done] tailored: val {metrics['val_accuracy']:.2f}%  test {metrics['test_accuracy']:.2f}%  "
            f"params {metrics['params']:,}  MACs {metrics['macs']:,}  |  teacher: test "
            f"{teacher_metrics['test_accuracy']:.2f}%  params {teacher_metrics['params']:,}  -> {out_dir}",
            file=sys.stderr, flush=True,
        )
    return result


def dump_spec(spec: Spec) -> str:
    import yaml

    import raytailor

    data = spec.to_dict()
    data["resolved"] = {
        "base_dir": spec.base_dir,  # relative paths in this spec are relative to here
        "versions": {"raytailor": raytailor.__version__, "torch": str(torch.__version__)},
    }
    return yaml.safe_dump(data, sort_keys=False)
