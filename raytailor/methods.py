"""The one contract every tailoring method honours, and the registry that finds them.

A method turns (prepared task, teacher, config) into *candidates*: the sub-models it built,
each a module that is physically what would be exported. ``run.py`` measures every candidate
on the module itself, picks one, and saves what is worth keeping; the search layer and the
tables see only those measured rows. Nothing outside a method's package knows what its
candidates are (NetTailor: the prunings of one trained student; TransTailor: the steps of its
chain).

A method lives in ``raytailor/<package>/method.py`` as ``METHOD``, an instance of a
``TailoringMethod`` subclass; ``get_method(name)`` finds it by scanning the packages, so a new
method needs no change outside its own package.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from raytailor.errors import SpecError

if TYPE_CHECKING:
    from raytailor.backbones import BlockNetwork
    from raytailor.data import TensorLoader
    from raytailor.module_on_disk import ModuleOnDisk

# (stage, step, metrics): per-epoch training reports, one callback for every method and stage
Report = Callable[[str, int, dict[str, float]], None]

# ``run.py`` reports each measured sub-model as a step of this stage (not a training epoch)
SUBMODELS_STAGE = "submodels"

# A training report whose metrics hold every ``projected_<cost>`` and a validation accuracy is
# an *estimate*: what the model the run would produce from where it stands costs, and how
# accurate it is so far. The accuracy is ``projected_val_accuracy`` where the method measures
# that model apart from what it trains (NetTailor: the student with its own pruning applied to
# the current attention), else ``val_accuracy`` (TransTailor: the current step of its chain is
# that model). A search's early stopping judges trials on estimates only.
PROJECTED_COSTS = ("macs", "params", "task_params")

# A training report that holds ``candidates_ready`` (a count) comes from a run that has that many
# candidates trained to their end and could end with them now (``Goal.go_on``): a search whose
# budget is spent, or whose early stopping would stop the run, lets it, where stopping it would
# lose what it trained.
CANDIDATES_READY = "candidates_ready"

# A run's final metrics hold ``cut_short``: True when it ended with the candidates it had ready
# because ``Goal.go_on`` said no (``MethodOutcome.cut_short``); the search's tables say so as
# the trial's reason.
CUT_SHORT = "cut_short"


def estimate_of(metrics: dict[str, float]) -> dict[str, float] | None:
    """``{"val_accuracy", "macs", "params", "task_params"}`` of an estimate report, else None."""
    accuracy = metrics.get("projected_val_accuracy", metrics.get("val_accuracy"))
    if accuracy is None or not all(f"projected_{cost}" in metrics for cost in PROJECTED_COSTS):
        return None
    return {"val_accuracy": float(accuracy), **{cost: float(metrics[f"projected_{cost}"]) for cost in PROJECTED_COSTS}}


@dataclass(frozen=True)
class Goal:
    """What ``run.py`` will choose when the method makes no pick of its own: the leanest
    candidate by ``cost`` (``macs``, ``params`` or ``task_params``, as measured on the module)
    whose validation accuracy reaches ``accuracy_target``. A method may leave out work on
    candidates that cannot be that one (NetTailor's ``finetune_prunings: leanest_first``, ``bisect``).

    ``leaner_than``, where given, says what a candidate must not cost more than to be of any use:
    the teacher's cost (the teacher meets the target by definition) or, in a search, that of the
    leanest feasible model the search already holds. It may fall while the run goes on (a search's
    other trials finish), so a method reads it again before each costly step."""

    accuracy_target: float
    cost: str
    leaner_than: Callable[[], float] | None = None
    # whether the run may go on training candidates past those it has ready: a search whose
    # budget is spent says no, and so does one whose early stopping would stop this run. A method
    # that can end with its ready candidates asks before each further one and after each of its
    # epochs (``report_while_optional``), and ends with them.
    go_on: Callable[[], bool] | None = None

    def worth(self, cost: float) -> bool:
        """Whether a candidate of ``cost`` could still be of use (see ``leaner_than``)."""
        return self.leaner_than is None or cost <= self.leaner_than()

    def may_go_on(self) -> bool:
        return self.go_on is None or bool(self.go_on())


class EnoughCandidates(Exception):
    """Raised by ``report_while_optional`` once the goal says not to go on: the method catches
    it, drops the candidate in training and ends with the ones it has ready."""


def report_while_optional(report: Report | None, ready: int, goal: Goal | None, *,
                          done_at: tuple[str, int]) -> Report | None:
    """``report`` for the training of a candidate, ``ready`` candidates being done: each report
    says how many the run could end with now (``CANDIDATES_READY``; at ``done_at``, the (stage,
    epoch) that completes the candidate in training, that one too), and once a report has gone
    out, raises ``EnoughCandidates`` if ``goal`` says not to go on, except at ``done_at`` (the
    method asks ``goal.may_go_on`` before the next candidate). The first candidate (``ready`` 0)
    is always trained to its end (a run yields a model): only its last report says it is ready.
    Unchanged when ``goal`` has no ``go_on`` (nobody would ask the run to end)."""
    if goal is None or goal.go_on is None:
        return report

    def reporting(stage: str, step: int, metrics: dict[str, float]) -> None:
        done = (stage, step) == done_at
        if report is not None:
            now = ready + done
            report(stage, step, {**metrics, CANDIDATES_READY: now} if now else metrics)
        if ready and not done and not goal.may_go_on():
            raise EnoughCandidates()

    return reporting


@dataclass
class Candidate:
    """One sub-model a method produced."""

    # what would be exported (the run measures params/MACs on it); a method that yields many
    # whole networks keeps them on disk until the run loads each in turn (``module_on_disk``)
    model: nn.Module | ModuleOnDisk
    architecture: dict[str, Any]      # the method's part of architecture.json; ``rebuild`` reads it
    # what the task adds to the shared backbone (task_params); None: the whole model is the task's
    task_modules: list[nn.Module] | None = None
    details: dict[str, Any] = field(default_factory=dict)  # scalars for result.json and the tables
    # hyper-parameters this sub-model stands for where they differ from the run's values (a
    # NetTailor pruning's theta and K); a search tells the sampler about it with these
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodOutcome:
    candidates: list[Candidate]       # sub-model k is candidates[k]
    # the method's own pick (TransTailor: tau's last accepted sub-model); None: the run picks the
    # leanest sub-model that meets the accuracy target (the most accurate if none does)
    chosen: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # run-level scalars (iterations, stop_reason)
    # the run ended with the candidates it had ready when ``Goal.go_on`` said no (``run.py`` puts
    # it in the run's metrics as ``cut_short``; the search's tables give it as the trial's reason)
    cut_short: bool = False


class TailoringMethod:
    """Subclass and set ``name`` and ``config_type``; implement ``tailor`` and ``rebuild``."""

    name: str
    config_type: type

    def tailor(self, pretrained: BlockNetwork, teacher: BlockNetwork, config: Any, *, image_size: int,
               train_loader: TensorLoader, val_loader: TensorLoader, report: Report | None,
               verbose: bool, goal: Goal | None = None) -> MethodOutcome:
        """Tailor a private copy of ``pretrained`` (its classifier already has the target's classes).
        ``teacher`` is the fine-tuned network (a distillation target, or only a reference).
        Every training epoch goes to ``report``; those that can say what the run would produce
        carry an estimate (``estimate_of``), which lets a search stop a hopeless run early.
        ``goal``: what the run will choose among the candidates (None: no accuracy target)."""
        raise NotImplementedError

    def rebuild(self, architecture: dict[str, Any]) -> nn.Module:
        """An empty module of the exported shape from ``architecture.json``; weights load into it."""
        raise NotImplementedError

    def fewest_epochs(self, values: dict[str, list]) -> int:
        """The fewest training epochs a run may spend to its end (where it has models to show),
        over ``values`` (as ``check``'s). A search's budget starts no trial that the budget left
        could not carry that far. 0 by default: not known, nothing is held back."""
        return 0

    def check(self, values: dict[str, list], backbone: BlockNetwork) -> None:
        """Refuse, with a one-line ``SpecError``, hyper-parameter values ``backbone`` cannot take
        (before any training). ``values``: every value a run or search may use, by name (each
        choice, a range's bounds, fixed values, defaults). Nothing to refuse by default."""


def _discover() -> dict[str, TailoringMethod]:
    import raytailor

    found: dict[str, TailoringMethod] = {}
    root = Path(raytailor.__file__).parent
    for info in pkgutil.iter_modules([str(root)]):
        if info.ispkg and (root / info.name / "method.py").is_file():
            method = importlib.import_module(f"raytailor.{info.name}.method").METHOD
            found[method.name] = method
    return found


_REGISTRY: dict[str, TailoringMethod] = {}


def methods() -> dict[str, TailoringMethod]:
    """Every method, by name."""
    if not _REGISTRY:
        _REGISTRY.update(_discover())
    return _REGISTRY


def get_method(name: str) -> TailoringMethod:
    found = methods()
    if name not in found:
        raise SpecError(f"method must be one of {', '.join(sorted(found))}, got {name!r}")
    return found[name]
