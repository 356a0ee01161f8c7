"""The shared fit / evaluate loop."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raytailor.data import TensorLoader, TensorSplit
from raytailor.errors import TailoringError
from raytailor.train import OptimConfig, evaluate, fit, sgd


def _split(n=64, classes=2):
    labels = torch.arange(n) % classes
    images = (labels.view(-1, 1, 1, 1) * 200 + torch.zeros(n, 3, 8, 8)).to(torch.uint8)
    return TensorSplit(images=images, labels=labels)


def _loader(split, **kw):
    return TensorLoader(split, batch_size=16, mean=(0.4,) * 3, std=(0.4,) * 3, **kw)


def test_fit_learns_a_separable_task_and_reports_metrics():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    seen = []
    metrics = fit(model, stage="t", train_loader=_loader(_split(), shuffle=True), val_loader=_loader(_split()),
                  optimizer=sgd([{"params": list(model.parameters())}], OptimConfig(3, 0.1)), epochs=3,
                  step_loss=lambda x, y: (F.cross_entropy(model(x), y), model(x), {"extra": 1.0}),
                  on_epoch=lambda stage, epoch, m: seen.append((stage, epoch, m["val_accuracy"])), verbose=False)
    assert metrics["val_accuracy"] == 100.0 and metrics["extra"] == pytest.approx(1.0)
    assert [s[:2] for s in seen] == [("t", 1), ("t", 2), ("t", 3)]
    assert evaluate(model, _loader(_split())) == 100.0


def test_cosine_schedule_decays_to_near_zero_and_training_ends_on_the_last_step():
    """The learning rate follows a per-step cosine from its base to near zero, and fit keeps the
    weights and metrics of its last epoch: no best epoch is restored (nothing is selected here)."""
    model = nn.Linear(3 * 8 * 8, 2)
    optimizer = sgd([{"params": list(model.parameters())}], OptimConfig(2, 0.5))
    lrs, snapshots = [], []

    def step_loss(x, y):
        lrs.append(optimizer.param_groups[0]["lr"])
        out = model(x.flatten(1))
        return F.cross_entropy(out, y), out, {}

    def on_epoch(stage, epoch, metrics):
        snapshots.append(({k: v.clone() for k, v in model.state_dict().items()}, dict(metrics)))

    returned = fit(model, stage="t", train_loader=_loader(_split()), val_loader=None,
                   optimizer=optimizer, epochs=2, step_loss=step_loss, on_epoch=on_epoch, verbose=False)
    steps = 2 * 4  # 64 images in batches of 16, two epochs
    assert lrs == pytest.approx([0.25 * (1 + math.cos(math.pi * i / steps)) for i in range(steps)])
    assert lrs[-1] < 0.05
    assert len(snapshots) == 2 and not torch.equal(snapshots[0][0]["weight"], snapshots[1][0]["weight"])
    assert all(torch.equal(v, snapshots[-1][0][k]) for k, v in model.state_dict().items())
    assert returned == snapshots[-1][1]


def test_diverging_loss_is_a_tailoring_error():
    model = nn.Linear(3 * 8 * 8, 2)
    with pytest.raises(TailoringError, match="the loss became nan at epoch 1; lower the learning rate"):
        fit(model, stage="student", train_loader=_loader(_split()), val_loader=None,
            optimizer=sgd([{"params": list(model.parameters())}], OptimConfig(1, 0.1)), epochs=1,
            step_loss=lambda x, y: (torch.tensor(float("nan"), requires_grad=True), model(x.flatten(1)), {}),
            verbose=False)


def _host_reads(monkeypatch) -> list[str]:
    """Every read of a tensor's value into Python (each one waits for the device on a GPU)."""
    reads = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


@pytest.mark.parametrize("images", [64, 256])
def test_the_training_loop_reads_the_device_once_per_epoch_whatever_the_steps(monkeypatch, images):
    """4 or 16 steps per epoch, the same reads: metrics are summed on the device, read per epoch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    train, val = _loader(_split(images)), _loader(_split(32))

    def step_loss(x, y):
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        return ce + 0.1 * logits.pow(2).mean(), logits, {"ce": ce}

    optimizer = sgd([{"params": list(model.parameters())}], OptimConfig(2, 0.1))
    reads = _host_reads(monkeypatch)
    metrics = fit(model, stage="t", train_loader=train, val_loader=val, optimizer=optimizer, epochs=2,
                  step_loss=step_loss, verbose=False)
    monkeypatch.undo()
    assert set(metrics) >= {"loss", "ce", "train_accuracy", "val_accuracy"}
    assert len(reads) <= 2 * 2, reads  # per epoch: the training sums once, the validation count once


def test_bf16_precision_runs_forward_passes_in_bf16_and_keeps_weights_and_losses_fp32():
    from raytailor.train import precision_scope, resolve_precision

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    seen = []
    model[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    losses = []

    def step_loss(x, y):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        losses.append(loss.dtype)
        return loss, logits, {}

    optimizer = sgd([{"params": list(model.parameters())}], OptimConfig(1, 0.1))
    with precision_scope("bf16", torch.device("cpu")):
        metrics = fit(model, stage="t", train_loader=_loader(_split()), val_loader=_loader(_split(32)),
                      optimizer=optimizer, epochs=1, step_loss=step_loss, verbose=False)
    assert set(seen) == {torch.bfloat16} and set(losses) == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert math.isfinite(metrics["loss"]) and 0 <= metrics["val_accuracy"] <= 100
    with precision_scope("fp32", torch.device("cpu")):
        model(torch.zeros(1, 3, 8, 8))
    assert seen[-1] == torch.float32
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_inside_one_bf16_scope_every_forward_sees_the_weights_as_they_are_now():
    """A stage runs whole inside one precision_scope: a forward after an optimizer step must
    use the updated weights, not a bf16 copy cast at the first step (autocast's cast cache)."""
    from raytailor.train import precision_scope

    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x = torch.randn(3, 4)
    with precision_scope("bf16", torch.device("cpu")):
        before = model(x)
        with torch.no_grad():
            model.weight.add_(1.0)  # what optimizer.step() does, in place
        after = model(x)
    expected = x @ model.weight.detach().T + model.bias.detach()
    assert not torch.equal(before, after)
    assert torch.allclose(after.float(), expected, atol=0.1)
