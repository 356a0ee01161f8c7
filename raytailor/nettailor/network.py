"""PathNetwork: frozen pre-trained blocks + task-specific proxies mixed by soft attention.

The same class is the dense student (all paths), the pruned student (some paths disabled and
skipped) and the compacted, exported model (only surviving paths exist as modules). Node l is
``x_l = ReLU( sum_{paths p->l} alpha_pl * B_pl(x_p) )`` (paper Eq. 2-4) with ``alpha`` the
softmax over the logits of the enabled paths entering node l (Eq. 3), initialised +2 for the
block and -2 for proxies.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from raytailor.backbones.base import BlockNetwork
from raytailor.backbones.registry import describe_blocks
from raytailor.cost import count_macs, image_macs
from raytailor.errors import BackboneError
from raytailor.nettailor.graph import Path
from raytailor.nettailor.proxy import Proxy, downsample

BLOCK_LOGIT_INIT = 2.0
PROXY_LOGIT_INIT = -2.0


def _check_proxy_resolution(arch: str, image_size: int, infos: list, src: int, dst: int, stride: int) -> None:
    """A proxy max-pools with ceil rounding; a backbone that pools with floor rounding (VGG)
    on an odd map would give it a map of another size than the block it runs beside."""
    source = infos[src].in_resolution  # node src feeds block src + 1
    pooled = -(-source // stride)
    if pooled != infos[dst - 1].resolution:
        total = math.prod(info.stride for info in infos)
        raise BackboneError(
            f"{arch} at {image_size} px: node {dst} is {infos[dst - 1].resolution} px but a proxy from node "
            f"{src} would pool {source} px to {pooled} px; use an image size divisible by {total}"
        )


class PathNetwork(nn.Module):
    def __init__(self, backbone: BlockNetwork, paths: list[Path], *, image_size: int) -> None:
        """Take the stem, the blocks that ``paths`` use, pool and classifier from ``backbone``.

        Blocks not on a path are dropped (not referenced), so a compacted network physically
        holds only what survives. Proxies are created fresh for every proxy path.
        """
        super().__init__()
        infos = describe_blocks(backbone, image_size)
        self.arch = backbone.arch
        self.image_size = image_size
        self.num_nodes = backbone.num_blocks  # L: nodes are 0..L
        self.paths = sorted(paths)
        channels = [infos[0].in_channels] + [info.out_channels for info in infos]
        strides = [1] + [info.stride for info in infos]

        self.stem = backbone.stem
        self.blocks = nn.ModuleDict()
        self.proxies = nn.ModuleDict()
        for path in self.paths:
            if path.kind == "block":
                self.blocks[path.name] = backbone.blocks[path.dst - 1]
            else:
                stride = math.prod(strides[path.src + 1 : path.dst + 1])
                _check_proxy_resolution(backbone.arch, image_size, infos, path.src, path.dst, stride)
                self.proxies[path.name] = Proxy(
                    channels[path.src], channels[path.dst], stride=stride,
                    bottleneck_width=infos[path.dst - 1].bottleneck_width,
                )
        self.block_activation = backbone.block_activation
        self.pool = backbone.pool
        self.classifier = backbone.classifier
        self.attention = nn.ParameterDict({
            p.name: nn.Parameter(torch.tensor(BLOCK_LOGIT_INIT if p.kind == "block" else PROXY_LOGIT_INIT))
            for p in self.paths
        })
        for module in (self.stem, self.blocks):
            module.requires_grad_(False)
        self.disabled: frozenset[Path] = frozenset()
        self._entering = {n: [p for p in self.paths if p.dst == n] for n in range(1, self.num_nodes + 1)}
        self._position = {p: i for i, p in enumerate(self.paths)}  # path -> index into alpha

        # Eq. 9 costs: MACs of each path normalised by the MACs of the whole pre-trained network.
        device = next(backbone.parameters()).device
        self.proxies.to(device)
        total = image_macs(backbone, image_size)
        costs = []
        for path in self.paths:
            if path.kind == "block":
                costs.append(infos[path.dst - 1].macs)
            else:
                res = infos[path.src - 1].resolution if path.src > 0 else _stem_resolution(backbone, image_size)
                probe = torch.zeros(1, channels[path.src], res, res, device=device)
                costs.append(count_macs(self.proxies[path.name], probe))
        self.path_macs: list[int] = costs  # per image, in ``self.paths`` order
        self.register_buffer("path_costs", torch.tensor(costs, dtype=torch.float32) / total, persistent=False)

    # ---- structure -------------------------------------------------------------------------
    def disable(self, paths: set[Path] | frozenset[Path]) -> None:
        """Skip ``paths`` (the pruned student); they leave the softmax and are not computed."""
        unknown = set(paths) - set(self.paths)
        if unknown:
            raise ValueError(f"paths not in this network: {sorted(unknown)}")
        self.disabled = frozenset(paths)

    def enabled_paths(self) -> list[Path]:
        return [p for p in self.paths if p not in self.disabled]

    def task_modules(self) -> list[nn.Module]:
        """What a task adds on top of the shared frozen backbone."""
        return [self.proxies, self.classifier, self.attention]

    def train(self, mode: bool = True) -> "PathNetwork":
        """Frozen pre-trained modules stay in eval mode: their BN statistics must not drift."""
        super().train(mode)
        self.stem.eval()
        self.blocks.eval()
        return self

    # ---- attention -------------------------------------------------------------------------
    def attention_weights(self) -> torch.Tensor:
        """alpha for every path in ``self.paths`` order (0 for disabled paths), Eq. 3."""
        weights = []
        for entering in self._entering.values():
            if not entering:
                continue
            logits = torch.stack([self.attention[p.name] for p in entering])
            disabled = [p in self.disabled for p in entering]  # structure: Python, not a tensor branch
            if all(disabled):
                weights.append(torch.zeros_like(logits))
            elif any(disabled):
                mask = torch.tensor(disabled, device=logits.device)
                weights.append(torch.softmax(logits.masked_fill(mask, float("-inf")), dim=0))
            else:
                weights.append(torch.softmax(logits, dim=0))
        return torch.cat(weights)

    # ---- forward ---------------------------------------------------------------------------
    def forward_nodes(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Return ({node: activation}, logits, alpha). Nodes with no enabled input are absent."""
        alpha = self.attention_weights()
        nodes = {0: self.stem(x)}
        pooled: dict[tuple[int, int], torch.Tensor] = {}  # (source node, stride) -> pooled input
        for node, entering in self._entering.items():
            mixed = None
            for path in entering:
                if path in self.disabled:
                    continue
                weight = alpha[self._position[path]]
                if path.kind == "block":
                    term = weight * self.blocks[path.name](nodes[path.src])
                else:
                    proxy = self.proxies[path.name]
                    key = (path.src, proxy.stride)
                    if key not in pooled:
                        pooled[key] = downsample(nodes[path.src], proxy.stride)
                    term = proxy.forward_pooled(pooled[key], weight)
                mixed = term if mixed is None else mixed + term
            if mixed is not None:
                nodes[node] = self.block_activation(mixed)
        if self.num_nodes not in nodes:
            raise RuntimeError("no enabled path reaches the last node")
        return nodes, self.classifier(self.pool(nodes[self.num_nodes])), alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_nodes(x)[1]


def _stem_resolution(backbone: BlockNetwork, image_size: int) -> int:
    device = next(backbone.parameters()).device
    with torch.no_grad():
        was_training = backbone.stem.training
        backbone.stem.eval()
        out = backbone.stem(torch.zeros(1, 3, image_size, image_size, device=device))
        backbone.stem.train(was_training)
    return out.shape[2]
