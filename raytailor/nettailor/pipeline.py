"""NetTailor end to end (paper Sec. 3.2): student -> prune (one or many ways) -> compact -> fine-tune.

Plain PyTorch, no Ray: the search runs exactly this once per trial.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raytailor.backbones import BlockNetwork
from raytailor.data import TensorLoader
from raytailor.fold import folded_attributes, folded_copy
from raytailor.nettailor.compaction import compact
from raytailor.nettailor.complexity import ExpectedComplexity
from raytailor.nettailor.config import NetTailorConfig
from raytailor.nettailor.distillation import teacher_loss
from raytailor.nettailor.finetune_order import BY_COST, fine_tune_order
from raytailor.nettailor.graph import Path, dense_paths
from raytailor.nettailor.network import PathNetwork
from raytailor.nettailor.projection import PathCosts
from raytailor.nettailor.pruning import select_survivors
from raytailor.errors import TailoringError
from raytailor.methods import EnoughCandidates, Goal, report_while_optional
from raytailor.pareto import meets_target
from raytailor.train import EpochCallback, OptimConfig, StepLoss, evaluate, fit, sgd


@dataclass
class Pruning:
    """One pruning of the trained student: its (theta, K), what survived, the fine-tuned model."""

    theta: float
    blocks_removed: int
    survivors: list[Path]
    model: PathNetwork            # compacted and fine-tuned


@dataclass
class NetTailorOutcome:
    prunings: list[Pruning]       # one per distinct set of surviving paths fine-tuned, in that order:
    #                               the run's own (theta, K) first (by cost: as ``finetune_order`` names them)
    attention: dict[str, float]   # student attention per path before pruning
    duplicates: int = 0           # grid points whose survivors an earlier pruning already had
    empty: int = 0                # grid points that left no path to the classifier
    skipped: int = 0              # distinct prunings not fine-tuned (by cost, or cut short)
    cut_short: bool = False       # ended with the prunings it had when ``goal.go_on`` said no

    @property
    def model(self) -> PathNetwork:
        return self.prunings[0].model

    @property
    def survivors(self) -> list[Path]:
        return self.prunings[0].survivors


def pruning_grid(config: NetTailorConfig) -> list[tuple[float, int]]:
    """The (theta, K) pairs one trained student is pruned with: the run's own ``theta`` and
    ``blocks_removed`` first, then every other pair of the grid ``prune_thetas`` x ``prune_blocks``
    (each list includes the run's own value). Only (theta, K) decide which paths survive a
    trained student, so one student serves them all (the paper sweeps K the same way, Sec. 4)."""
    own = (config.theta, config.blocks_removed)
    thetas = sorted({config.theta, *config.prune_thetas})
    blocks = sorted({config.blocks_removed, *config.prune_blocks})
    return [own] + [(t, k) for t in thetas for k in blocks if (t, k) != own]


def build_student(pretrained: BlockNetwork, teacher: BlockNetwork, *, skips: int, image_size: int,
                  classifier: str = "teacher") -> PathNetwork:
    """Dense student on a private copy of the frozen pre-trained blocks.

    ``classifier="teacher"`` (our default) starts the classifier from the teacher's: the student
    is trained to reproduce the teacher's features, so the teacher's classifier is a natural
    starting point. ``"fresh"`` keeps ``pretrained``'s newly initialised one, as the public
    NetTailor code does.
    """
    backbone = copy.deepcopy(pretrained)
    if classifier == "teacher":
        backbone.classifier.load_state_dict(teacher.classifier.state_dict())
    student = PathNetwork(backbone, dense_paths(backbone.num_blocks, skips), image_size=image_size)
    return student.to(next(teacher.parameters()).device)


def student_objective(
    network: PathNetwork, teacher: BlockNetwork, *, gamma1: float, gamma2: float
) -> StepLoss:
    """``step_loss`` for CE + g1 E[C] + g2 Omega (Eq. 12): one student forward per step, the
    teacher without autograd. ``teacher`` should be a BN-folded copy (see train_paths)."""
    complexity = ExpectedComplexity(network.paths, network.num_nodes)

    def step_loss(images, labels):
        with torch.no_grad():
            teacher_nodes, teacher_logits = teacher.forward_nodes(images)
        nodes, logits, alpha = network.forward_nodes(images)
        ce = F.cross_entropy(logits, labels)
        loss, extras = ce, {"ce": ce}  # read back once per epoch by fit, not here
        if gamma1 > 0:
            expected = complexity(alpha, network.path_costs)
            loss = loss + gamma1 * expected
            extras["expected_complexity"] = expected
        if gamma2 > 0:
            omega = teacher_loss(nodes, logits, teacher_nodes, teacher_logits)
            loss = loss + gamma2 * omega
            extras["teacher_loss"] = omega
        return loss, logits, extras

    return step_loss


def path_optimizer(network: PathNetwork, optim: OptimConfig) -> torch.optim.Optimizer:
    """SGD over the task-specific parameters; attention logits get no weight decay."""
    return sgd(
        [{"params": list(network.proxies.parameters()) + list(network.classifier.parameters())},
         {"params": list(network.attention.parameters()), "weight_decay": 0.0}],
        optim,
    )


def train_paths(
    network: PathNetwork, teacher: BlockNetwork, *, stage: str, gamma1: float, gamma2: float,
    optim: OptimConfig, train_loader: TensorLoader, val_loader: TensorLoader,
    on_epoch: EpochCallback | None, verbose: bool,
) -> dict[str, float]:
    """Train a PathNetwork's task-specific parameters. The teacher and the student's frozen
    stem/blocks run as BN-folded copies (same outputs, no BatchNorm kernels)."""
    step_loss = student_objective(network, folded_copy(teacher), gamma1=gamma1, gamma2=gamma2)

    def with_attention(stage_name: str, epoch: int, metrics: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(stage_name, epoch, {**metrics, **attention_statistics(network)})

    with folded_attributes(network, ["stem", "blocks"]):
        return fit(network, stage=stage, train_loader=train_loader, val_loader=val_loader,
                   optimizer=path_optimizer(network, optim), epochs=optim.epochs,
                   step_loss=step_loss, on_epoch=with_attention, verbose=verbose)


@torch.no_grad()
def attention_statistics(network: PathNetwork) -> dict[str, float]:
    """Mean/min block attention and mean/max proxy attention, for per-epoch logging."""
    alpha = network.attention_weights()
    blocks = alpha[[i for i, p in enumerate(network.paths) if p.kind == "block"]]
    proxies = alpha[[i for i, p in enumerate(network.paths) if p.kind == "proxy"]]
    stats = {}
    if blocks.numel():
        stats |= {"attention_block_mean": blocks.mean().item(), "attention_block_min": blocks.min().item()}
    if proxies.numel():
        stats |= {"attention_proxy_mean": proxies.mean().item(), "attention_proxy_max": proxies.max().item()}
    return stats


def _fp32_accuracy(network: PathNetwork, val_loader: TensorLoader) -> float:
    """Validation accuracy as ``run.py`` measures the exported model: in fp32, whatever the run's
    precision."""
    with torch.autocast(next(network.parameters()).device.type, enabled=False):
        return evaluate(network, val_loader)


def _with_costs(on_epoch: EpochCallback | None, costs: dict[str, int]) -> EpochCallback | None:
    if on_epoch is None:
        return None
    return lambda stage, epoch, metrics: on_epoch(stage, epoch, {**metrics, **costs})


def run_nettailor(
    pretrained: BlockNetwork, teacher: BlockNetwork, *, config: NetTailorConfig, image_size: int,
    train_loader: TensorLoader, val_loader: TensorLoader,
    on_epoch: EpochCallback | None = None, verbose: bool = True, goal: Goal | None = None,
) -> NetTailorOutcome:
    """Train one student, then prune it with every (theta, K) of ``pruning_grid`` and fine-tune
    each distinct pruning. With ``finetune_prunings: leanest_first`` (or ``leanest_up``, without the
    probe, or ``bisect``) and a ``goal``, only the
    prunings that could be the run's choice are fine-tuned, in the order of ``finetune_order.py``
    (``leanest_first``: from the leanest up to the first that reaches the target, nothing
    costlier than ``goal.leaner_than`` past the leanest, and after the first miss the costliest
    still of use as a probe; if it misses too, none in between). Once ``goal.go_on`` says no (a search's
    budget is spent), the run ends with the prunings it has fine-tuned, leaving out the one in
    training (never the first). Raises if no pruning leaves a path to the classifier."""
    grid = pruning_grid(config)
    too_many = max(k for _, k in grid)
    if too_many > pretrained.num_blocks:
        raise ValueError(f"blocks_removed must be <= the backbone's {pretrained.num_blocks} blocks, got {too_many}")
    student = build_student(pretrained, teacher, skips=config.skips, image_size=image_size,
                            classifier=config.student_classifier)
    costs = PathCosts.measure(student)
    by_cost = config.finetune_prunings in BY_COST and goal is not None

    def student_estimate(stage: str, epoch: int, metrics: dict[str, float]) -> None:
        # what the run would produce from here (raytailor.methods)
        if on_epoch is None:
            return
        if by_cost:
            # its best case: the leanest pruning of the grid, as accurate as the dense student is
            # now (a fine-tuned pruning may end above that; early stopping learns by how much
            # from the trials that finished)
            alpha = student.attention_weights().detach().cpu().tolist()  # one read-back for the grid
            projections = [costs.projected(student, theta=t, blocks_removed=k, alpha=alpha) for t, k in grid]
            projections = [p for p in projections if p]
            estimate = min(projections, key=lambda p: p[f"projected_{goal.cost}"], default={})
            if estimate:
                estimate = {**estimate, "projected_val_accuracy": metrics["val_accuracy"]}
        else:  # the run's own pruning as it would come out of the attention now
            estimate = costs.projected(student, theta=config.theta, blocks_removed=config.blocks_removed,
                                       val_loader=val_loader)
        on_epoch(stage, epoch, {**metrics, **estimate})

    train_paths(
        student, teacher, stage="student", gamma1=config.gamma1, gamma2=config.gamma2,
        optim=OptimConfig(config.student_epochs, config.student_lr, config.momentum, config.weight_decay),
        train_loader=train_loader, val_loader=val_loader, on_epoch=student_estimate, verbose=verbose,
    )
    alpha = student.attention_weights().detach().cpu().tolist()
    outcome = NetTailorOutcome(prunings=[], attention={p.name: a for p, a in zip(student.paths, alpha)})
    distinct: list[tuple[float, int, list[Path]]] = []
    seen: set[frozenset[Path]] = set()
    failure: TailoringError | None = None
    for theta, blocks_removed in grid:
        try:
            survivors = select_survivors(student.paths, alpha, theta=theta, blocks_removed=blocks_removed,
                                         last_node=student.num_nodes)
        except TailoringError as error:
            outcome.empty += 1
            failure = failure or error
            continue
        if frozenset(survivors) in seen:
            outcome.duplicates += 1
            continue
        seen.add(frozenset(survivors))
        distinct.append((theta, blocks_removed, survivors))
    if not distinct:
        raise failure
    if by_cost:
        order = fine_tune_order(config.finetune_prunings,
                                [costs.of(survivors)[f"projected_{goal.cost}"] for *_, survivors in distinct],
                                bound=goal.leaner_than or (lambda: math.inf))
        rank = {position: r for r, position in enumerate(order.order)}
        positions = iter(order.next, None)
    else:
        positions = iter(range(len(distinct)))
    for position in positions:
        if outcome.prunings and not (goal is None or goal.may_go_on()):
            outcome.cut_short = True
            break
        theta, blocks_removed, survivors = distinct[position]
        tailored = compact(student, survivors)
        if verbose:
            blocks = sum(p.kind == "block" for p in survivors)
            print(f"[prune] theta {theta:g}, K {blocks_removed}: kept {blocks}/{student.num_nodes} blocks and "
                  f"{len(survivors) - blocks}/{len(student.proxies)} proxies", file=sys.stderr, flush=True)
        # a stage's name says which pruning it fine-tunes (in cost order: its rank by cost), so a
        # trial started again on its stage checkpoints never loads one pruning's into another
        k = rank[position] if by_cost else len(outcome.prunings)
        if config.finetune_epochs > 0:
            # the run's own pruning continues the student's estimates (in cost order: no
            # estimate past the student, the pruning the run ends with is not known yet)
            report = _with_costs(on_epoch, costs.of(survivors)) if k == 0 and not by_cost else on_epoch
            stage = "finetune" if k == 0 else f"finetune_{k}"
            try:
                train_paths(
                    tailored, teacher, stage=stage, gamma1=0.0, gamma2=config.gamma2,
                    optim=OptimConfig(config.finetune_epochs, config.finetune_lr, config.momentum, config.weight_decay),
                    train_loader=train_loader, val_loader=val_loader, verbose=verbose,
                    on_epoch=report_while_optional(report, len(outcome.prunings), goal,
                                                   done_at=(stage, config.finetune_epochs)),
                )
            except EnoughCandidates:
                outcome.cut_short = True
                break
        tailored.eval()
        if by_cost:
            order.reached(position, meets_target(_fp32_accuracy(tailored, val_loader), goal.accuracy_target))
        outcome.prunings.append(Pruning(theta, blocks_removed, survivors, tailored))
    outcome.skipped = len(distinct) - len(outcome.prunings)
    return outcome
