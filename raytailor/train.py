"""Fit / evaluate loops shared by every method and stage (teacher, student, fine-tune).

A stage supplies ``step_loss(images, labels) -> (loss, logits, extras)``; the loop owns the
optimizer step, the cosine learning-rate schedule, accuracy bookkeeping, progress lines on
stderr and per-epoch callbacks (the search layer logs them to TensorBoard).

The loops never wait on the device inside an epoch: losses, extra terms and correct counts are
summed as tensors where they are computed and read back once per epoch (on a GPU, a per-step
``.item()`` would stop the host until every queued kernel had run). A diverged loss is found
from the epoch's sum, so it is reported at the end of the epoch it happened in.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from raytailor import stage_checkpoints
from raytailor.data import TensorLoader
from raytailor.errors import TailoringError


# extras: more loss terms to log, as 0-d tensors (detached here); never read back per step
StepLoss = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]
EpochCallback = Callable[[str, int, dict[str, float]], None]


@dataclass(frozen=True)
class OptimConfig:
    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on a CUDA device that supports it, else fp32."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def precision_scope(precision: str, device: torch.device):
    """Forward passes inside run under bf16 autocast when ``precision`` is bf16 (matmuls and convs
    in bf16; softmax, losses and reductions in fp32 by autocast's own rules); ``fit`` runs its
    backward pass and optimizer step outside it, and parameters stay fp32.

    Without autocast's cache of weight casts: the scope spans whole stages, and that cache lives
    until the outermost autocast region ends, so every forward would reuse the bf16 copy of each
    trained weight cast at the first step, whatever the optimizer did since (the weights would
    seem frozen: the demo's teacher reached 15 % in 2 epochs instead of 92 %)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)


def sgd(param_groups: list[dict], config: OptimConfig) -> torch.optim.SGD:
    """SGD with momentum; a group may override ``weight_decay`` (attention logits use 0)."""
    groups = [g for g in param_groups if any(p.requires_grad for p in g["params"])]
    for group in groups:
        group["params"] = [p for p in group["params"] if p.requires_grad]
        group.setdefault("weight_decay", config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


@torch.no_grad()
def evaluate(model: nn.Module, loader: TensorLoader) -> float:
    """Top-1 accuracy in percent."""
    was_training = model.training
    model.eval()
    correct: torch.Tensor | int = 0
    total = 0
    for images, labels in loader:
        correct = correct + (model(images).argmax(dim=1) == labels).sum()  # stays on the device
        total += labels.numel()
    model.train(was_training)
    return 100.0 * int(correct) / max(total, 1)


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _read_back(sums: dict[str, torch.Tensor], correct: torch.Tensor, seen: int) -> dict[str, float]:
    """The epoch's mean of every summed value and its training accuracy: one transfer."""
    values = torch.stack([*sums.values(), correct.float()]).tolist()
    metrics = {key: value / max(seen, 1) for key, value in zip(sums, values)}
    metrics["train_accuracy"] = 100.0 * values[-1] / max(seen, 1)
    return metrics


def fit(
    model: nn.Module,
    *,
    stage: str,
    train_loader: TensorLoader,
    val_loader: TensorLoader | None,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    step_loss: StepLoss,
    on_epoch: EpochCallback | None = None,
    verbose: bool = True,
) -> dict[str, float]:
    """Train ``epochs`` epochs with a per-step cosine schedule; return the last epoch's metrics.

    Inside ``stage_checkpoints.resumable`` the stage is saved as it goes and continues from
    what was saved: a finished stage only loads its tensors (and reports nothing again)."""
    checkpoints = stage_checkpoints.active()
    index, saved = checkpoints.begin(stage, epochs) if checkpoints is not None else (0, None)
    done = 0
    if saved is not None:
        checkpoints.load(index, model, optimizer)
        done = saved["epoch"]
        if done >= epochs:  # leave the model and the loader as training them would have
            model.train()
            train_loader.set_epoch(epochs + 1)
            return dict(saved["metrics"])
    total_steps = max(1, epochs * len(train_loader))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    step = done * len(train_loader)
    metrics: dict[str, float] = {}
    for epoch in range(done + 1, epochs + 1):
        model.train()
        train_loader.set_epoch(epoch)
        started = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}  # per-step values x batch size, on the device
        correct = torch.zeros((), dtype=torch.int64, device=_device_of(model))
        seen = 0
        for images, labels in train_loader:
            scale = 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * scale
            loss, logits, extras = step_loss(images, labels)  # under the caller's precision_scope, if any
            with torch.autocast(loss.device.type, enabled=False):  # backward and step in full precision
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            step += 1
            batch = labels.numel()
            seen += batch
            correct = correct + (logits.detach().argmax(dim=1) == labels).sum()
            for key, value in {"loss": loss, **extras}.items():
                value = torch.as_tensor(value, device=loss.device).detach().float() * batch
                sums[key] = sums[key] + value if key in sums else value
        metrics = _read_back(sums, correct, seen)
        if not math.isfinite(metrics.get("loss", 0.0)):
            raise TailoringError(
                f"{stage}: the loss became {metrics['loss']} at epoch {epoch}; "
                "lower the learning rate or the loss weights"
            )
        if val_loader is not None:
            metrics["val_accuracy"] = evaluate(model, val_loader)
        metrics["epoch_seconds"] = time.perf_counter() - started
        if verbose:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch_seconds")
            print(f"[{stage}] epoch {epoch}/{epochs}  {shown}  ({metrics['epoch_seconds']:.1f}s)",
                  file=sys.stderr, flush=True)
        if checkpoints is not None:
            checkpoints.save(index, stage=stage, epoch=epoch, epochs=epochs, model=model, optimizer=optimizer,
                             metrics=metrics)
        if on_epoch is not None:
            on_epoch(stage, epoch, metrics)
    return metrics
