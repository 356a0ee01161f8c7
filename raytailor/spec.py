"""Experiment spec: YAML -> typed, validated dataclasses. Unknown keys are rejected.

Every error is a :class:`SpecError` whose one-line message names the field, the value and the
rule. ``--set KEY=VALUE`` overrides any field (``data.image_size=32``) or pins a method
hyper-parameter (``gamma1=0.5``: removed from ``space``, put in ``fixed``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raytailor.errors import SpecError
from raytailor.methods import get_method, methods
OBJECTIVES = ("accuracy", "macs", "params", "task_params")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
PRECISIONS = ("fp32", "bf16", "auto")
SAMPLERS = ("tpe", "nsga2", "random", "gp")


@dataclass(frozen=True)
class BackboneSpec:
    arch: str
    weights: str = "none"  # imagenet | none | path (relative to the spec file) | asset:NAME


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    root: str | None = None
    image_size: int = 224
    val_fraction: float = 0.1
    test_fraction: float = 0.2  # only for datasets without an official test split
    seed: int = 0
    download: bool = False
    num_classes: int | None = None
    samples_per_class: int | None = None
    flip: bool | None = None  # None: the dataset's default (no flips for digits)
    augment: bool = True


@dataclass(frozen=True)
class TeacherSpec:
    epochs: int = 30
    lr: float = 0.01
    batch_size: int = 64
    weight_decay: float = 5e-4
    momentum: float = 0.9


@dataclass(frozen=True)
class TargetSpec:
    max_drop: float = 0.5  # accuracy points below the teacher's validation accuracy


@dataclass(frozen=True)
class ResourcesSpec:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class EarlyStoppingSpec:
    """Constraint-aware multi-objective early stopping (raytailor/search/early_stopping.py).
    ``search.early_stopping: none`` switches it off."""

    reduction_factor: float = 3.0  # rungs every x epochs (grace, grace*x, ...); keep the best 1/x
    grace_epochs: int = 2          # the first rung: no trial is judged before this many epochs
    min_finished: int = 2          # finished trials needed before "cannot become feasible" stops any
    slack: float = 1.0             # points added to the largest gain finished trials made
    # a trial is dominated only by one more accurate by at least this many standard errors of
    # the difference of two accuracies measured on the validation images (0: by any amount)
    dominance_se: float = 1.0


@dataclass(frozen=True)
class SearchSpec:
    trials: int = 16
    max_concurrent: int = 2
    sampler: str = "tpe"
    seed: int = 0
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    # a trial's worker process runs the next trial instead of a fresh one starting (importing
    # torch, ray.tune, raytailor): several seconds saved per trial
    reuse_workers: bool = True
    early_stopping: EarlyStoppingSpec | str = field(default_factory=EarlyStoppingSpec)  # or "none"
    # a trial whose worker died (killed, out of memory, a lost node) runs again, from its last
    # checkpoint, up to this many times; a trial that fails by itself (diverged, no path left) never does
    max_failures: int = 2
    # a trial saves its training state every this many epochs and at the end of each stage
    # (0: at the end of each stage only); a retried or resumed trial continues from the last one
    checkpoint_every: int = 1
    # the training epochs all trials may spend together (every stage counts); once spent, no
    # trial starts and running ones stop at their next epoch (search/budget.py). None: no limit
    budget_epochs: int | None = None

    @property
    def stopping(self) -> EarlyStoppingSpec | None:
        """The early-stopping settings, None when switched off."""
        return None if isinstance(self.early_stopping, str) else self.early_stopping


@dataclass(frozen=True)
class ParamSpec:
    """One searched hyper-parameter: a float/int range (``low``/``high``, ``log``, ``step``) or
    ``choices``; ``default`` is what ``raytailor tailor`` uses (method default when absent).
    ``when: {other: value}`` (or ``{other: [values]}``) samples it only when an earlier space
    entry took that value; otherwise it keeps its default."""

    low: int | float | None = None   # both bounds integers (0, not 0.0): an integer range
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list | None = None
    default: Any = None
    when: dict[str, Any] | None = None


@dataclass(frozen=True)
class Spec:
    name: str
    method: str
    backbone: BackboneSpec
    data: DataSpec
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    target: TargetSpec = field(default_factory=TargetSpec)
    objectives: list[str] = field(default_factory=lambda: ["accuracy", "macs"])
    search: SearchSpec = field(default_factory=SearchSpec)
    space: dict[str, ParamSpec] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # fp32 | bf16 | auto (bf16 on a CUDA device that has it): the forward passes of every training
    # stage run under autocast in this precision; weights, losses and final metrics stay fp32
    precision: str = "fp32"
    base_dir: str = field(default=".", metadata={"internal": True})  # the spec file's folder

    def hyperparameters(self) -> dict[str, Any]:
        """Values for one fixed run: each space default (if given), then ``fixed``."""
        values = {name: p.default for name, p in self.space.items() if p.default is not None}
        values.update(self.fixed)
        return values

    def possible_values(self) -> dict[str, list]:
        """Every value a run or search of this spec may give each method hyper-parameter: a
        range's bounds, each choice and default of the space, fixed values, method defaults."""
        defaults = get_method(self.method).config_type()
        values = {f.name: [getattr(defaults, f.name)] for f in dataclasses.fields(defaults)}
        for name, param in self.space.items():
            bounds = param.choices if param.choices is not None else [param.low, param.high]
            values[name] = [v for v in [*bounds, param.default] if v is not None]
        for name, value in self.fixed.items():
            values[name] = [value]
        return values

    def fewest_epochs(self) -> int:
        """The fewest training epochs a run of this spec may spend to its end, over every value
        its space and fixed values allow (the method's ``fewest_epochs``)."""
        return get_method(self.method).fewest_epochs(self.possible_values())

    def method_config(self, values: dict[str, Any] | None = None):
        """The method's config dataclass built from ``values`` (default: ``hyperparameters()``)."""
        values = self.hyperparameters() if values is None else values
        config = get_method(self.method).config_type
        hints = typing.get_type_hints(config)
        values = {k: _coerce(v, hints[k], k) if k in hints else v for k, v in values.items()}
        try:
            return config(**values)
        except (TypeError, ValueError) as error:
            raise SpecError(f"{self.method} hyper-parameters: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("base_dir")
        return data


TASKS = "tasks"
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RESERVED_TASK_NAMES = ("trials", "models", "spec.yaml", "search.json", "summary.json")  # the search folder's own
TASK_KEYS = ("name", "data", "target", "teacher")  # what a task may set; the rest is shared


@dataclass(frozen=True)
class MultiTaskSpec:
    """A spec with ``tasks:``: several datasets searched together on one backbone. Each task is
    a whole single-task :class:`Spec`: the shared sections, its own ``data`` (over the shared
    ``data`` defaults, if any) and, where the task gives them, its own ``target`` and ``teacher``
    (over the shared ones). ``search.trials`` is per task; ``search.max_concurrent`` for all."""

    name: str
    tasks: dict[str, Spec]  # task name -> its spec, in the order the spec lists them
    raw: dict[str, Any]     # the spec as written (overrides applied): what spec.yaml records
    base_dir: str = "."

    @property
    def first(self) -> Spec:
        return next(iter(self.tasks.values()))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


def parse_multitask_spec(raw: dict, *, overrides: list[str] | None = None,
                         base_dir: Path | None = None) -> MultiTaskSpec:
    """A ``tasks:`` spec: every task's spec checked as a whole (errors name the task)."""
    import copy

    raw = apply_overrides({k: v for k, v in raw.items() if k != TASKS}, overrides or []) | {TASKS: copy.deepcopy(raw[TASKS])}
    tasks = raw[TASKS]
    if not isinstance(tasks, list) or not tasks:
        raise SpecError(f"{TASKS} must be a non-empty list of {{name, data, target?, teacher?}}, got {tasks!r}")
    for item in overrides or []:  # --set data.image_size=32 also wins over a task's own image_size
        section, _, key = item.partition("=")[0].partition(".")
        for task in tasks:
            own = task.get(section) if isinstance(task, dict) and section in TASK_KEYS[1:] else None
            if isinstance(own, dict) and key in own:
                task[section] = apply_overrides({section: own}, [item])[section]
    if not isinstance(raw.get("name"), str):
        raise SpecError("spec: missing required key 'name' (a string)")
    shared = {k: v for k, v in raw.items() if k != TASKS}
    specs: dict[str, Spec] = {}
    for i, task in enumerate(tasks):
        where = f"{TASKS}[{i}]"
        if not isinstance(task, dict):
            raise SpecError(f"{where} must be a mapping with name and data, got {task!r}")
        unknown = sorted(set(task) - set(TASK_KEYS))
        if unknown:
            raise SpecError(f"{where}: unknown key {unknown[0]!r}; a task sets {', '.join(TASK_KEYS)} "
                            "(everything else is shared by the tasks)")
        name = task.get("name")
        if not isinstance(name, str) or not TASK_NAME.fullmatch(name) or name.lower() in RESERVED_TASK_NAMES:
            raise SpecError(f"{where}.name must be a folder name of letters, digits, '_', '-', '.' (not "
                            f"{', '.join(RESERVED_TASK_NAMES)}), got {name!r}")
        if name.lower() in {other.lower() for other in specs}:
            raise SpecError(f"{where}.name {name!r} is given to two tasks (names differing in case only are one "
                            "folder on some file systems); name each task once")
        if "data" not in task:
            raise SpecError(f"{where} ({name}): missing required key 'data'")
        own = copy.deepcopy(shared)
        own["name"] = f"{raw['name']}-{name}"
        for section in ("data", "target", "teacher"):
            given = task.get(section)
            if given is None:
                continue
            if not isinstance(given, dict):
                raise SpecError(f"{where}.{section} must be a mapping, got {given!r}")
            base = own.get(section)
            own[section] = {**(base if isinstance(base, dict) else {}), **given}
        try:
            specs[name] = parse_spec(own, base_dir=base_dir)
        except SpecError as error:
            raise SpecError(f"task {name}: {error}") from None
    return MultiTaskSpec(name=raw["name"], tasks=specs, raw=raw, base_dir=str(base_dir or Path.cwd()))


def load_search_spec(path: str | Path, overrides: list[str] | None = None) -> Spec | MultiTaskSpec:
    """A spec for ``raytailor search``: one task (:func:`load_spec`) or several (``tasks:``)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist; pass the path of a YAML spec")
    raw = read_yaml(path)
    if not isinstance(raw, dict) or TASKS not in raw:
        return load_spec(path, overrides)
    resolved = raw.pop("resolved", None)
    base_dir = resolved.get("base_dir") if isinstance(resolved, dict) else None
    return parse_multitask_spec(raw, overrides=overrides,
                                base_dir=Path(base_dir) if base_dir else path.resolve().parent)


# ---- loading ---------------------------------------------------------------------------------
def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist; pass the path of a YAML spec")
    raw = read_yaml(path)
    # a spec raytailor wrote (RUN/spec.yaml) records where its relative paths are relative to
    resolved = raw.pop("resolved", None) if isinstance(raw, dict) else None
    base_dir = resolved.get("base_dir") if isinstance(resolved, dict) else None
    return parse_spec(raw, overrides=overrides, base_dir=Path(base_dir) if base_dir else path.resolve().parent)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (plain YAML keeps the last one
    silently, so ``gamma1`` written twice would search the second range without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise SpecError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one mapping; "
                                "keep one of them")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """A YAML file as plain data; one-line SpecError for bad encoding, syntax or repeated keys."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not UTF-8 text (byte {error.object[error.start]:#x} at offset {error.start}); "
                        "save the spec as UTF-8") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot be read ({error.strerror}); check the path and its permissions") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None


def load_resolved_spec(path: str | Path) -> Spec:
    """Read back the ``spec.yaml`` a run or search wrote (it records base_dir and versions)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{str(path.parent)!r} holds no spec.yaml; is it a raytailor output folder?")
    return load_spec(path)


def parse_spec(raw: Any, *, overrides: list[str] | None = None, base_dir: Path | None = None) -> Spec:
    if not isinstance(raw, dict):
        raise SpecError(f"a spec must be a YAML mapping, got {type(raw).__name__}")
    if TASKS in raw:
        raise SpecError(f"this spec names several tasks ({TASKS}:), which only `raytailor search` runs; this command "
                        "takes a spec with one data section (each task folder of a search holds its own spec.yaml)")
    raw = apply_overrides(raw, overrides or [])
    spec = _build(Spec, raw, "spec")
    spec = dataclasses.replace(spec, base_dir=str(base_dir or Path.cwd()))
    _validate(spec)
    return spec


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``KEY=VALUE`` strings (VALUE parsed as YAML) to a copy of the raw spec."""
    import copy

    raw = copy.deepcopy(raw)
    sections = {f.name for f in dataclasses.fields(Spec)}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        if parts[0] in sections:
            node = raw
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[parts[-1]] = value
            continue
        names = _method_fields(raw.get("method"))
        if len(parts) == 1 and key in names:
            if isinstance(raw.get("space"), dict):
                raw["space"].pop(key, None)
            if not isinstance(raw.get("fixed"), dict):
                raw["fixed"] = {}
            raw["fixed"][key] = value
            continue
        raise SpecError(
            f"--set {key}: not a spec field or a {raw.get('method')} hyper-parameter; "
            f"use SECTION.FIELD (e.g. data.image_size) or one of {', '.join(sorted(names))}"
        )
    return raw


def _method_fields(method: Any) -> set[str]:
    config = methods()[method].config_type if isinstance(method, str) and method in methods() else None
    return {f.name for f in dataclasses.fields(config)} if config else set()


def _build(cls: type, raw: Any, where: str):
    """Build dataclass ``cls`` from mapping ``raw``, checking keys and value types."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where}: missing required key {name!r}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except SpecError as error:
                errors.append(error)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise SpecError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where} must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported spec type {hint!r} at {where}")


def _validate(spec: Spec) -> None:
    from raytailor.backbones import list_backbones

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise SpecError(message)

    need(spec.method in methods(), f"method must be one of {', '.join(sorted(methods()))}, got {spec.method!r}")
    need(spec.backbone.arch in list_backbones(),
         f"backbone.arch {spec.backbone.arch!r} is unknown; choose one of {', '.join(list_backbones())}")
    need(spec.data.image_size >= 8, f"data.image_size must be >= 8, got {spec.data.image_size}")
    need(0 <= spec.data.val_fraction < 1, f"data.val_fraction must be in [0, 1), got {spec.data.val_fraction}")
    need(0 <= spec.data.test_fraction < 1, f"data.test_fraction must be in [0, 1), got {spec.data.test_fraction}")
    need(spec.target.max_drop >= 0, f"target.max_drop must be >= 0 accuracy points, got {spec.target.max_drop}")
    need(spec.teacher.epochs >= 0, f"teacher.epochs must be >= 0, got {spec.teacher.epochs}")
    need(spec.teacher.lr > 0, f"teacher.lr must be > 0, got {spec.teacher.lr}")
    need(spec.teacher.batch_size >= 1, f"teacher.batch_size must be >= 1, got {spec.teacher.batch_size}")
    need(bool(spec.objectives) and spec.objectives[0] == "accuracy",
         f"objectives must start with accuracy, got {spec.objectives}")
    for objective in spec.objectives:
        need(objective in OBJECTIVES, f"objective {objective!r} is unknown; use {', '.join(OBJECTIVES)}")
    repeated = sorted({o for o in spec.objectives if spec.objectives.count(o) > 1})
    need(not repeated, f"objectives name {repeated[0] if repeated else ''!r} twice; list each objective once")
    need(spec.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {spec.precision!r}")
    need(DEVICE.fullmatch(spec.device) is not None,
         f"device must be auto, cpu, cuda or cuda:N, got {spec.device!r}")
    need(spec.search.sampler in SAMPLERS, f"search.sampler must be one of {', '.join(SAMPLERS)}, got {spec.search.sampler!r}")
    need(spec.search.trials >= 1, f"search.trials must be >= 1, got {spec.search.trials}")
    need(spec.search.max_failures >= 0, f"search.max_failures must be >= 0, got {spec.search.max_failures}")
    need(spec.search.checkpoint_every >= 0,
         f"search.checkpoint_every must be >= 0 (epochs; 0: end of each stage only), got {spec.search.checkpoint_every}")
    budget = spec.search.budget_epochs
    need(budget is None or budget >= 1,
         f"search.budget_epochs must be >= 1 (training epochs of all trials; null: no limit), got {budget!r}")
    need(spec.search.max_concurrent >= 1, f"search.max_concurrent must be >= 1, got {spec.search.max_concurrent}")
    need(spec.search.resources.cpu > 0, f"search.resources.cpu must be > 0 (a GPU trial still needs a CPU), got {spec.search.resources.cpu}")
    stopping = spec.search.early_stopping
    need(stopping == "none" or not isinstance(stopping, str),
         f"search.early_stopping must be none or a mapping of its settings, got {stopping!r}")
    if spec.search.stopping is not None:
        need(stopping.reduction_factor > 1,
             f"search.early_stopping.reduction_factor must be > 1, got {stopping.reduction_factor}")
        need(stopping.grace_epochs >= 1, f"search.early_stopping.grace_epochs must be >= 1, got {stopping.grace_epochs}")
        need(stopping.min_finished >= 1, f"search.early_stopping.min_finished must be >= 1, got {stopping.min_finished}")
        need(stopping.slack >= 0, f"search.early_stopping.slack must be >= 0 accuracy points, got {stopping.slack}")
        need(stopping.dominance_se >= 0,
             f"search.early_stopping.dominance_se must be >= 0 standard errors, got {stopping.dominance_se}")
    need(spec.search.resources.gpu >= 0, f"search.resources.gpu must be >= 0, got {spec.search.resources.gpu}")
    names = _method_fields(spec.method)
    for section in ("space", "fixed"):
        for key in getattr(spec, section):
            need(key in names, f"{section}.{key} is not a {spec.method} hyper-parameter; known: {', '.join(sorted(names))}")
    for key in set(spec.space) & set(spec.fixed):
        raise SpecError(f"{key} is both in space and fixed; keep it in one of them")
    for key, param in spec.space.items():
        _validate_param(key, param)
        for other in (param.when or {}):
            need(other in spec.space and other != key,
                 f"space.{key}.when refers to {other!r}, which is not another space entry")
    sampling_order(spec.space)
    spec.method_config()  # every default and fixed value must make a valid config
    if budget is not None:
        fewest = spec.fewest_epochs()
        need(budget >= fewest, f"search.budget_epochs is {budget}, less than the {fewest} training epochs a trial "
                               f"spends at the least: no trial could run; raise it or shorten the trials")


def sampling_order(space: dict[str, ParamSpec]) -> list[str]:
    """Space entries ordered so that every ``when`` condition is sampled before its entry."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise SpecError(f"space.{name}.when conditions form a cycle; make one of them unconditional")
        visiting.add(name)
        for other in (space[name].when or {}):
            visit(other)
        visiting.discard(name)
        order.append(name)

    for name in space:
        visit(name)
    return order


def _validate_param(key: str, p: ParamSpec) -> None:
    where = f"space.{key}"
    if p.choices is not None:
        if p.low is not None or p.high is not None:
            raise SpecError(f"{where}: give either choices or low/high, not both")
        if not p.choices:
            raise SpecError(f"{where}.choices is empty; list at least one value")
        if p.default is not None and p.default not in p.choices:
            raise SpecError(f"{where}.default {p.default!r} is not one of the choices {p.choices}")
        return
    if p.low is None or p.high is None:
        raise SpecError(f"{where}: needs low and high, or choices")
    if not p.low <= p.high:
        raise SpecError(f"{where}: low {p.low} must be <= high {p.high}")
    if p.log and p.low <= 0:
        raise SpecError(f"{where}: a log range needs low > 0, got {p.low}")
    if p.default is not None and not p.low <= p.default <= p.high:
        raise SpecError(f"{where}.default {p.default} is outside [{p.low}, {p.high}]")
