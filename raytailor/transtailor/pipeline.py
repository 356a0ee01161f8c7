"""TransTailor end to end (paper Algorithm 1): W* -> repeat(train alpha, beta, prune z,
importance-aware fine-tune) until the accuracy drops by more than tau points.

Plain PyTorch, no Ray. Every iteration yields a sub-model (an accuracy/MACs trade-off point);
the chosen one is the last sub-model the tau test accepted.

The tau test (Eq. 8, ``within_tau``) compares each new sub-model with the *last accepted* one
(W* at first), not with the most accurate one seen: the paper's Algorithm 1 sets
``best = new`` after every accepted step, so a slow slide of drops each within tau is accepted.
"""

from __future__ import annotations

import copy
import functools
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from raytailor.backbones import BlockNetwork
from raytailor.cost import count_params, image_macs
from raytailor.data import TensorLoader
from raytailor.methods import EnoughCandidates, Goal, report_while_optional
from raytailor.module_on_disk import ModuleOnDisk, ModuleShelf
from raytailor.train import EpochCallback, OptimConfig, evaluate, fit, sgd
from raytailor.transtailor.config import TransTailorConfig
from raytailor.transtailor.gates import attach_scales, remove_scales_by_folding, scales_of, set_scales
from raytailor.transtailor.importance import filter_importance
from raytailor.transtailor.rebuild import layer_widths, rebuild_pruned
from raytailor.transtailor.surgery import prune_lowest


@dataclass
class TransTailorOutcome:
    chain: list[dict] = field(default_factory=list)  # W*, then one record per sub-model
    # aligned with chain: every step is a whole network, kept on disk, not in host memory
    submodels: list[ModuleOnDisk] = field(default_factory=list)
    chosen_iteration: int = 0        # 0: W* itself
    stopped_at: int | None = None    # iteration whose drop exceeded tau, None if none did
    stop_reason: str = "max_iterations"  # "tau", "max_iterations", "exhausted" or "cut_short"

    @property
    def model(self) -> BlockNetwork:
        """The chosen sub-model W_o (a plain BlockNetwork on the CPU, eval mode)."""
        return self.submodels[self.chosen_iteration].load()


def _step_loss(network: nn.Module, *, frozen_bn: bool = False):
    def step_loss(images, labels):
        if frozen_bn:  # fit() puts the model in train mode each epoch; W^s_f stays frozen (Eq. 3)
            network.eval()
        logits = network(images)
        loss = F.cross_entropy(logits, labels)
        return loss, logits, {}
    return step_loss


def _weight_optimizer(network: BlockNetwork, config: TransTailorConfig, epochs: int,
                      lr: float | None = None) -> torch.optim.Optimizer:
    """SGD, classifier at classifier_lr and every other trainable weight at conv_lr (paper).
    Built after each pruning step: pruning replaces the parameter tensors."""
    head = list(network.classifier.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in network.parameters() if id(p) not in head_ids]
    optim = OptimConfig(epochs, config.conv_lr, config.momentum, config.weight_decay)
    return sgd([{"params": body, "lr": config.conv_lr},
                {"params": head, "lr": config.classifier_lr if lr is None else lr}], optim)


def _train(network: BlockNetwork, *, stage: str, epochs: int, optimizer: torch.optim.Optimizer,
           train_loader: TensorLoader, val_loader: TensorLoader, frozen_bn: bool,
           on_epoch: EpochCallback | None, verbose: bool) -> None:
    if epochs > 0:
        fit(network, stage=stage, train_loader=train_loader, val_loader=val_loader,
            optimizer=optimizer, epochs=epochs, step_loss=_step_loss(network, frozen_bn=frozen_bn),
            on_epoch=on_epoch, verbose=verbose)


def within_tau(last_accepted: float, accuracy: float, tau: float) -> bool:
    """Eq. 8: accept a sub-model unless its validation accuracy is more than ``tau`` points below
    the last accepted sub-model's (the paper's Acc(best)); all three in points."""
    return not (last_accepted - accuracy > tau)


def _kept(shelf: ModuleShelf, network: BlockNetwork, record: dict) -> ModuleOnDisk:
    """A sub-model kept for the search's Pareto export, on disk: its shape is its record's widths."""
    return shelf.keep(network, functools.partial(rebuild_pruned, arch=network.arch,
                                                 num_classes=network.classifier.out_features,
                                                 widths=record["widths"]))


def _record(network: BlockNetwork, *, iteration: int, accuracy: float, image_size: int,
            filters_removed: int, accepted: bool) -> dict:
    return {"iteration": iteration, "val_accuracy": accuracy,
            "macs": image_macs(network, image_size), "params": count_params(network),
            "filters_removed": filters_removed, "accepted": accepted,
            "widths": layer_widths(network)}  # its shape: what export and rebuild_pruned read


def _estimated(on_epoch: EpochCallback | None, network: BlockNetwork, image_size: int) -> EpochCallback | None:
    """``on_epoch`` with the costs of ``network`` as it stands (its scaling factors, folded into
    BN once the step ends, not counted) added to every report: the run's estimate
    (``raytailor.methods``). Pruning only ever shrinks it further."""
    if on_epoch is None:
        return None
    params = count_params(network) - sum(s.alpha.numel() for s in scales_of(network))
    costs = {"projected_macs": image_macs(network, image_size), "projected_params": params,
             "projected_task_params": params}  # every weight is the task's
    return lambda stage, epoch, metrics: on_epoch(stage, epoch, {**metrics, **costs})


def run_transtailor(
    pretrained: BlockNetwork, *, config: TransTailorConfig, image_size: int,
    train_loader: TensorLoader, val_loader: TensorLoader,
    on_epoch: EpochCallback | None = None, verbose: bool = True, goal: Goal | None = None,
) -> TransTailorOutcome:
    """Algorithm 1 on a private copy of ``pretrained`` (whose classifier must already have the
    target's classes). Accuracies are in percent and tau in points. Once ``goal.go_on`` says
    no (a search's budget is spent), the chain ends with the steps it has, leaving out the one
    in training (never W*): ``stop_reason`` "cut_short"."""
    network = copy.deepcopy(pretrained)

    # Line 2: W* = the pre-trained model with its new FC fitted to the target task.
    for p in network.parameters():
        p.requires_grad_(False)
    for p in network.classifier.parameters():
        p.requires_grad_(True)
    # W*'s size; its last epoch says W* is ready (a search may end the chain there with it)
    last = ("full_finetune", config.full_finetune_epochs) if config.full_finetune_epochs else (
        "classifier", config.classifier_epochs)
    estimate = report_while_optional(_estimated(on_epoch, network, image_size), 0, goal, done_at=last)
    _train(network, stage="classifier", epochs=config.classifier_epochs,
           optimizer=_weight_optimizer(network, config, config.classifier_epochs),
           train_loader=train_loader, val_loader=val_loader, frozen_bn=True,
           on_epoch=estimate, verbose=verbose)
    for p in network.parameters():
        p.requires_grad_(True)
    _train(network, stage="full_finetune", epochs=config.full_finetune_epochs,
           optimizer=_weight_optimizer(network, config, config.full_finetune_epochs),
           train_loader=train_loader, val_loader=val_loader, frozen_bn=False,
           on_epoch=estimate, verbose=verbose)

    last_accepted = evaluate(network, val_loader)  # the paper's Acc(best): W* at first
    base_macs = image_macs(network, image_size)
    outcome = TransTailorOutcome()
    shelf = ModuleShelf(prefix="raytailor-transtailor-")
    outcome.chain.append(_record(network, iteration=0, accuracy=last_accepted, image_size=image_size,
                                 filters_removed=0, accepted=True))
    outcome.submodels.append(_kept(shelf, network, outcome.chain[-1]))
    step = {"macs_budget": round(config.prune_fraction * base_macs)} if config.prune_fraction \
        else {"filters": config.prune_filters}

    for iteration in range(1, config.max_iterations + 1):
        try:
            accepted = _iterate(network, iteration, config=config, step=step, image_size=image_size,
                                train_loader=train_loader, val_loader=val_loader, verbose=verbose,
                                on_epoch=on_epoch, goal=goal, outcome=outcome, shelf=shelf,
                                last_accepted=last_accepted)
        except EnoughCandidates:
            outcome.stop_reason = "cut_short"
            break
        if not accepted:  # tau, or no filter left (None)
            break
        last_accepted = outcome.chain[-1]["val_accuracy"]
        outcome.chosen_iteration = iteration
    return outcome


def _iterate(network: BlockNetwork, iteration: int, *, config: TransTailorConfig, step: dict, image_size: int,
             train_loader: TensorLoader, val_loader: TensorLoader, verbose: bool, on_epoch: EpochCallback | None,
             goal: Goal | None, outcome: TransTailorOutcome, shelf: ModuleShelf, last_accepted: float) -> bool | None:
    """One iteration of Algorithm 1 (lines 5-8) on ``network``, its step appended to ``outcome``;
    whether tau accepted it, None when no filter was left to prune. Raises ``EnoughCandidates``
    when ``goal`` says not to go on (before the step or at any of its epochs)."""
    if not (goal is None or goal.may_go_on()):
        raise EnoughCandidates()
    on_epoch = report_while_optional(on_epoch, len(outcome.submodels), goal,
                                     done_at=(f"finetune_{iteration}", config.finetune_epochs))
    # Line 5 (Eq. 3): alpha trained on the target data, every weight frozen.
    for p in network.parameters():
        p.requires_grad_(False)
    scales = attach_scales(network)
    set_scales(scales, [torch.ones_like(s.alpha) for s in scales], trainable=True)
    factor_optim = sgd([{"params": [s.alpha for s in scales], "weight_decay": 0.0}],
                       OptimConfig(config.factor_epochs, config.factor_lr, config.momentum, 0.0))
    _train(network, stage=f"factors_{iteration}", epochs=config.factor_epochs,
           optimizer=factor_optim, train_loader=train_loader, val_loader=None,
           frozen_bn=True, on_epoch=on_epoch, verbose=verbose)
    # Line 6 (Eq. 5): beta accumulated over the whole training set.
    # Lines 6-7 run in full precision whatever the spec's: the Taylor term sums gradients over
    # the whole training set, and torch-pruning traces the autograd graph (autocast's casts
    # would be nodes in it).
    with torch.autocast(train_loader.device.type, enabled=False):
        betas = filter_importance(network, scales, train_loader, F.cross_entropy)
        # Line 7: prune z filters with the lowest (group-summed) beta.
        pruned = prune_lowest(network, scales, betas, image_size=image_size, group_score=config.group_score,
                              **step)
    if pruned.channels_removed == 0:
        remove_scales_by_folding(network)
        outcome.stop_reason = "exhausted"
        return None
    # Line 8 (Eq. 6): importance-aware fine-tune. By default the target-aware importance
    # factors alpha (trained in line 5, pruned with their channels) stay in the outputs,
    # fixed, and beta only ranks filters; ``finetune_scale: beta`` multiplies the Taylor beta
    # in, as Eq. 6 writes it, which collapsed accuracy here (README "TransTailor").
    fixed = pruned.kept_betas if config.finetune_scale == "beta" else [s.alpha.detach() for s in scales]
    set_scales(scales, [value.clone() for value in fixed], trainable=False)
    for p in network.parameters():
        p.requires_grad_(True)
    for s in scales:
        s.alpha.requires_grad_(False)
    _train(network, stage=f"finetune_{iteration}", epochs=config.finetune_epochs,
           optimizer=_weight_optimizer(network, config, config.finetune_epochs),
           train_loader=train_loader, val_loader=val_loader, frozen_bn=False,
           on_epoch=_estimated(on_epoch, network, image_size), verbose=verbose)
    remove_scales_by_folding(network)  # beta stays part of the function, now inside BN
    accuracy = evaluate(network, val_loader)
    accepted = within_tau(last_accepted, accuracy, config.tau)
    outcome.chain.append(_record(network, iteration=iteration, accuracy=accuracy,
                                 image_size=image_size, filters_removed=pruned.filters_removed,
                                 accepted=accepted))
    outcome.submodels.append(_kept(shelf, network, outcome.chain[-1]))
    if verbose:
        print(f"[transtailor] iteration {iteration}: val {accuracy:.2f}% (last accepted {last_accepted:.2f}%), "
              f"MACs {outcome.chain[-1]['macs']:,}, {'accepted' if accepted else 'stop'}",
              file=sys.stderr, flush=True)
    if not accepted:
        outcome.stopped_at, outcome.stop_reason = iteration, "tau"
    return accepted
