"""Physical filter removal: one small adapter over torch-pruning's low-level API.

torch-pruning says WHICH channels are coupled (its dependency graph merges every conv that
feeds one residual addition into one group) and HOW to cut each layer; the ranking and the
exact choice of channels are ours: a group's channel is ranked by the SUM of its members'
beta, and the lowest-ranked channels are taken one by one until the budget is spent
(torch-pruning's global threshold over-prunes on ties, so it is not used).

Pitfalls handled here (torch-pruning 1.6.1): building the graph skips layers whose parameters
have requires_grad=False, leaves the model in eval mode, and pruning re-enables grads; all three
are undone so the caller's freezing and train/eval state survive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.pruner.function import BasePruningFunc

from raytailor.backbones.base import BlockNetwork
from raytailor.errors import BackboneError
from raytailor.transtailor.gates import ChannelScale
from raytailor.transtailor.rebuild import is_depthwise


class _ChannelScalePruner(BasePruningFunc):
    """Cuts alpha with its channel; in == out, so the same function couples both sides."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        removed = set(idxs)
        keep = [i for i in range(layer.alpha.numel()) if i not in removed]
        layer.alpha = self._prune_parameter_and_grad(layer.alpha, keep, 0)
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.alpha.numel()

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.alpha.numel()


@dataclass
class ChannelGroup:
    """Channels coupled across layers: removing root channel k removes it from every member.

    Layers are listed with how many of their input/output units one root channel spans (a
    linear layer after a flatten of an H x W map loses H*W inputs per channel). A group with no
    scaling factor (the squeeze channels inside a squeeze-excitation) has no importance and is
    never pruned."""

    root: nn.Conv2d
    name: str
    channels: int
    out_layers: list[tuple[nn.Module, int]]   # layers losing output channels (convs, depthwise too)
    in_layers: list[tuple[nn.Module, int]]    # layers losing inputs (next convs, linear layers)
    scale_idxs: list[tuple[int, list[int]]]  # (scale position, its channel for each root channel)

    @property
    def prunable(self) -> bool:
        return bool(self.scale_idxs)


@dataclass
class PruneResult:
    removed: dict[str, list[int]] = field(default_factory=dict)  # group name -> root channel idxs
    channels_removed: int = 0      # ranking units (one coupled channel = one unit)
    filters_removed: int = 0       # dense conv output filters physically removed
    macs_removed: int = 0          # per image, predicted exactly from per-layer costs
    kept_betas: list[torch.Tensor] = field(default_factory=list)  # aligned with the pruned scales


@contextlib.contextmanager
def _preserved_state(network: nn.Module) -> Iterator[None]:
    """Restore per-parameter requires_grad and per-module training flags by name (pruning
    replaces parameter objects, so identities cannot be used)."""
    grads = {name: p.requires_grad for name, p in network.named_parameters()}
    modes = {name: m.training for name, m in network.named_modules()}
    try:
        yield
    finally:
        for name, p in network.named_parameters():
            p.requires_grad_(grads.get(name, p.requires_grad))
        for name, m in network.named_modules():
            m.training = modes.get(name, m.training)


def dependency_graph(network: BlockNetwork, *, image_size: int) -> tp.DependencyGraph:
    """torch-pruning's graph of ``network`` (ChannelScale registered as a prunable layer)."""
    device = next(network.parameters()).device
    with _preserved_state(network):
        for p in network.parameters():
            p.requires_grad_(True)
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(
                network, example_inputs=torch.zeros(1, 3, image_size, image_size, device=device),
                customized_pruners={ChannelScale: _ChannelScalePruner()},
            )


def channel_groups(network: BlockNetwork, dg: tp.DependencyGraph,
                   scales: Sequence[ChannelScale]) -> list[ChannelGroup]:
    """Every coupled group, rooted at the first dense conv (module order) whose outputs it holds."""
    names = {m: n for n, m in network.named_modules()}
    position = {id(s): i for i, s in enumerate(scales)}
    groups: list[ChannelGroup] = []
    visited: set[int] = set()
    for conv in [m for m in network.modules() if isinstance(m, nn.Conv2d)]:
        if conv.groups != 1 and not is_depthwise(conv):
            raise BackboneError(
                f"TransTailor's pruning supports dense and depthwise convolutions; {names[conv]} of "
                f"{network.arch!r} has groups={conv.groups} of {conv.in_channels} channels"
            )
        if id(conv) in visited or is_depthwise(conv):
            continue  # a depthwise conv is always pruned with the conv that feeds it
        group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(conv.out_channels)))
        entry = ChannelGroup(conv, names[conv], conv.out_channels, [], [], [])
        for dep, idxs in group:
            module, is_out = dep.target.module, dg.is_out_channel_pruning_fn(dep.handler)
            units = len(idxs) // conv.out_channels
            if isinstance(module, ChannelScale) and id(module) in position:
                if all(position[id(module)] != p for p, _ in entry.scale_idxs):
                    entry.scale_idxs.append((position[id(module)], [int(i) for i in idxs]))
            elif isinstance(module, nn.Linear) and is_out:
                raise BackboneError(f"{network.arch!r}: conv {names[conv]} is coupled to the "
                                    "classifier's outputs; this structure cannot be pruned")
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                (entry.out_layers if is_out else entry.in_layers).append((module, units))
                if is_out:
                    visited.add(id(module))
        groups.append(entry)
    claimed = sorted(p for g in groups for p, _ in g.scale_idxs)
    if claimed != list(range(len(scales))):
        raise BackboneError(
            f"{network.arch!r}: {len(scales)} scales but {len(claimed)} belong to a pruning "
            "group; attach scales with attach_scales right before pruning"
        )
    return groups


def layer_macs(network: nn.Module, *, image_size: int) -> dict[nn.Module, int]:
    """MACs per image of every Conv2d / Linear, counted by forward hooks."""
    counts: dict[nn.Module, int] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            per_out = module.in_channels // module.groups * kh * kw
            counts[module] = per_out * output[0].numel()  # output[0]: C_out x H x W
        else:
            counts[module] = module.in_features * module.out_features

    device = next(network.parameters()).device
    handles = [m.register_forward_hook(hook) for m in network.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with _preserved_state(network), torch.no_grad():
        network.eval()
        try:
            network(torch.zeros(1, 3, image_size, image_size, device=device))
        finally:
            for handle in handles:
                handle.remove()
    return counts


def _in_out(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Conv2d):
        return module.in_channels, module.out_channels
    return module.in_features, module.out_features


def select_channels(
    groups: Sequence[ChannelGroup], betas: Sequence[torch.Tensor], macs: dict[nn.Module, int], *,
    macs_budget: int | None = None, filters: int | None = None, group_score: str = "sum",
) -> tuple[dict[int, list[int]], int]:
    """Lowest-ranked channels first (score = the beta of the channel's scales, summed or, with
    ``group_score="mean"``, averaged; ties: group order, then channel index) until ``macs_budget`` MACs are removed (the channel crossing it is included) or
    ``filters`` channels are taken. A group always keeps one channel; groups without a
    scaling factor are never taken. Returns ({group position: channel idxs}, predicted MACs
    removed)."""
    if (macs_budget is None) == (filters is None):
        raise ValueError("pass exactly one of macs_budget and filters")
    candidates = []
    for g, group in enumerate(groups):
        if not group.prunable:
            continue
        score = torch.zeros(group.channels, dtype=torch.float64)
        for position, idxs in group.scale_idxs:
            score += betas[position].detach().double().cpu()[idxs]
        if group_score == "mean":
            score /= len(group.scale_idxs)
        candidates += [(float(score[k]), g, k) for k in range(group.channels)]
    candidates.sort()
    # A dense layer costs coef * C_in * C_out MACs and a depthwise one coef * C, so the saving
    # of each removal is exact.
    size = {m: list(_in_out(m)) for m in macs}
    depthwise = {m for m in macs if isinstance(m, nn.Conv2d) and is_depthwise(m)}
    coef = {m: macs[m] / (size[m][1] if m in depthwise else size[m][0] * size[m][1]) for m in macs}
    left = [group.channels for group in groups]
    chosen: dict[int, list[int]] = {}
    removed = 0
    for _, g, k in candidates:
        if (filters is not None and sum(map(len, chosen.values())) >= filters) or (
            macs_budget is not None and removed >= macs_budget
        ):
            break
        if left[g] <= 1:
            continue
        left[g] -= 1
        chosen.setdefault(g, []).append(k)
        for layer, units in groups[g].out_layers:
            removed += round(coef[layer] * units * (1 if layer in depthwise else size[layer][0]))
            size[layer][1] -= units
        for layer, units in groups[g].in_layers:
            removed += round(coef[layer] * units * size[layer][1])
            size[layer][0] -= units
    return {g: sorted(idxs) for g, idxs in chosen.items()}, removed


def prune_lowest(
    network: BlockNetwork, scales: Sequence[ChannelScale], betas: Sequence[torch.Tensor], *,
    image_size: int, macs_budget: int | None = None, filters: int | None = None, group_score: str = "sum",
) -> PruneResult:
    """Remove the lowest-beta channels in place (conv, BN, alpha and the consumers' inputs
    shrink physically). ``scales`` must be the network's attached scales, ``betas`` theirs."""
    if len(betas) != len(scales):
        raise ValueError(f"got {len(betas)} beta vectors for {len(scales)} scales; pass one per scale")
    dg = dependency_graph(network, image_size=image_size)
    groups = channel_groups(network, dg, scales)
    chosen, macs_removed = select_channels(
        groups, betas, layer_macs(network, image_size=image_size),
        macs_budget=macs_budget, filters=filters, group_score=group_score,
    )
    keep = [torch.ones(s.alpha.numel(), dtype=torch.bool) for s in scales]
    result = PruneResult(macs_removed=macs_removed)
    with _preserved_state(network):
        for g, idxs in chosen.items():
            group = groups[g]
            for position, scale_idxs in group.scale_idxs:
                keep[position][[scale_idxs[k] for k in idxs]] = False
            result.removed[group.name] = idxs
            result.channels_removed += len(idxs)
            result.filters_removed += len(idxs) * sum(  # dense conv filters; depthwise ones go with them
                not is_depthwise(layer) for layer, _ in group.out_layers)
            dg.get_pruning_group(group.root, tp.prune_conv_out_channels, idxs).prune()
    result.kept_betas = [b.detach()[k.to(b.device)] for b, k in zip(betas, keep)]
    return result
