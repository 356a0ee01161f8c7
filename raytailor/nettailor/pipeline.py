"""NetTailor end to end (paper Sec. 3.2): student -> prune -> compact -> fine-tune.

Plain PyTorch, no Ray: the search runs exactly this once per trial.
"""

from __future__ import annotations

import copy
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
from raytailor.nettailor.graph import Path, dense_paths
from raytailor.nettailor.network import PathNetwork
from raytailor.nettailor.pruning import select_survivors
from raytailor.train import EpochCallback, OptimConfig, StepLoss, fit, sgd


@dataclass
class NetTailorOutcome:
    model: PathNetwork            # compacted and fine-tuned
    survivors: list[Path]
    attention: dict[str, float]   # student attention per path before pruning


def build_student(pretrained: BlockNetwork, teacher: BlockNetwork, *, skips: int, image_size: int) -> PathNetwork:
    """Dense student on a private copy of the frozen pre-trained blocks.

    The classifier starts from the teacher's: the student is trained to reproduce the teacher's
    features, so the teacher's classifier is the natural starting point.
    """
    backbone = copy.deepcopy(pretrained)
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
        loss, extras = ce, {"ce": ce.item()}
        if gamma1 > 0:
            expected = complexity(alpha, network.path_costs)
            loss = loss + gamma1 * expected
            extras["expected_complexity"] = expected.item()
        if gamma2 > 0:
            omega = teacher_loss(nodes, logits, teacher_nodes, teacher_logits)
            loss = loss + gamma2 * omega
            extras["teacher_loss"] = omega.item()
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


def run_nettailor(
    pretrained: BlockNetwork, teacher: BlockNetwork, *, config: NetTailorConfig, image_size: int,
    train_loader: TensorLoader, val_loader: TensorLoader,
    on_epoch: EpochCallback | None = None, verbose: bool = True,
) -> NetTailorOutcome:
    if config.blocks_removed > pretrained.num_blocks:
        raise ValueError(
            f"blocks_removed must be <= the backbone's {pretrained.num_blocks} blocks, got {config.blocks_removed}"
        )
    student = build_student(pretrained, teacher, skips=config.skips, image_size=image_size)
    train_paths(
        student, teacher, stage="student", gamma1=config.gamma1, gamma2=config.gamma2,
        optim=OptimConfig(config.student_epochs, config.student_lr, config.momentum, config.weight_decay),
        train_loader=train_loader, val_loader=val_loader, on_epoch=on_epoch, verbose=verbose,
    )
    alpha = student.attention_weights().detach().cpu().tolist()
    survivors = select_survivors(
        student.paths, alpha, theta=config.theta, blocks_removed=config.blocks_removed,
        last_node=student.num_nodes,
    )
    tailored = compact(student, survivors)
    if verbose:
        blocks = sum(p.kind == "block" for p in survivors)
        print(f"[prune] kept {blocks}/{student.num_nodes} blocks and "
              f"{len(survivors) - blocks}/{len(student.proxies)} proxies", file=sys.stderr, flush=True)
    if config.finetune_epochs > 0:
        train_paths(
            tailored, teacher, stage="finetune", gamma1=0.0, gamma2=config.gamma2,
            optim=OptimConfig(config.finetune_epochs, config.finetune_lr, config.momentum, config.weight_decay),
            train_loader=train_loader, val_loader=val_loader, on_epoch=on_epoch, verbose=verbose,
        )
    tailored.eval()
    return NetTailorOutcome(
        model=tailored, survivors=survivors,
        attention={p.name: a for p, a in zip(student.paths, alpha)},
    )
