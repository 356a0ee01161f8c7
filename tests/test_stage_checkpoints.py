"""A run cut short continues from its stage checkpoints and ends exactly where the run without
the interruption ends: for one fit, for NetTailor's student + prunings, for TransTailor's chain."""

import copy
import math
from contextlib import nullcontext

import pytest
import torch
from torch import nn

from raytailor.backbones import create_backbone
from raytailor.cost import image_macs
from raytailor.data import TensorLoader, load_splits
from raytailor.methods import Goal
from raytailor.nettailor.config import NetTailorConfig
from raytailor.nettailor.pipeline import run_nettailor
from raytailor.stage_checkpoints import StageCheckpoints, resumable
from raytailor.train import OptimConfig, fit, sgd
from raytailor.transtailor import TransTailorConfig, run_transtailor

DEMO_WEIGHTS = "asset:resnet20_shapes16.safetensors"


class Crash(Exception):
    """The process dies here."""


@pytest.fixture(scope="module")
def task():
    splits = load_splits(dataset="synthetic", image_size=16, num_classes=3, samples_per_class=12, seed=2)
    loader = lambda split, train=False: TensorLoader(split, batch_size=16, mean=splits.mean, std=splits.std,
                                                     shuffle=train, augment=train, seed=0)
    return splits, loader


def _reports(crash_at=None):
    """An on_epoch that records (stage, epoch) and dies after ``crash_at`` = (stage, epoch)."""
    seen = []

    def on_epoch(stage, epoch, metrics):
        seen.append((stage, epoch))
        if (stage, epoch) == crash_at:
            raise Crash
    return seen, on_epoch


def _cut_and_continued(method, folder, crash_at):
    """``method(on_epoch)`` run through, then in ``folder``'s stage checkpoints cut after
    ``crash_at`` and run again there: (uninterrupted outcome, continued outcome, what the
    continued run reported)."""
    def run(folder=None, crash_at=None):
        torch.manual_seed(0)
        seen, on_epoch = _reports(crash_at)
        with resumable(StageCheckpoints(folder)) if folder else nullcontext():
            return method(on_epoch), seen

    reference, _ = run()
    with pytest.raises(Crash):
        run(folder, crash_at)
    continued, seen = run(folder)
    return reference, continued, seen


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_fit_cut_short_continues_to_the_same_weights(task, tmp_path):
    splits, loader = task

    def run(folder=None, crash_at=None):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(4, 3))
        seen, on_epoch = _reports(crash_at)
        step_loss = lambda x, y: (lambda logits: (nn.functional.cross_entropy(logits, y), logits, {}))(model(x))
        with resumable(StageCheckpoints(folder)) if folder else nullcontext():
            for stage in ("first", "second"):
                fit(model, stage=stage, train_loader=loader(splits.train, True), val_loader=None,
                    optimizer=sgd([{"params": list(model.parameters())}], OptimConfig(3, 0.1)), epochs=3,
                    step_loss=step_loss, on_epoch=on_epoch, verbose=False)
        return model, seen

    reference, _ = run()
    with pytest.raises(Crash):
        run(tmp_path, crash_at=("second", 1))
    resumed, seen = run(tmp_path)
    assert seen == [("second", 2), ("second", 3)]  # nothing finished is trained or reported again
    assert _same(resumed, reference)  # momentum, BN statistics and the schedule continue exactly
    # a folder another run wrote (other stages) is not used
    other, seen = run(tmp_path / "other")
    assert _same(other, reference) and len(seen) == 6


def test_nettailor_cut_short_in_a_later_pruning_ends_as_the_uninterrupted_run(task, tmp_path):
    splits, loader = task
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    config = NetTailorConfig(skips=1, theta=0.01, blocks_removed=2, student_epochs=2, finetune_epochs=2,
                             prune_blocks=[0, 6], batch_size=16)

    reference, resumed, seen = _cut_and_continued(lambda on_epoch: run_nettailor(
        pretrained, copy.deepcopy(pretrained), config=config, image_size=16, train_loader=loader(splits.train, True),
        val_loader=loader(splits.val), on_epoch=on_epoch, verbose=False), tmp_path, ("finetune_2", 1))
    assert len(reference.prunings) == 3
    assert seen == [("finetune_2", 2)]  # no student epoch, no finished fine-tune trained again
    for a, b in zip(resumed.prunings, reference.prunings, strict=True):
        assert a.survivors == b.survivors and _same(a.model, b.model)


def _run_by_cost(task, policy, bound=math.inf, folder=None, crash_in=None):
    """NetTailor with ``finetune_prunings: policy`` and a target no pruning reaches, under
    ``bound``; dies in the first epoch of the stage ``crash_in`` says yes to. (outcome, the
    (stage, epoch) reports, the fine-tuned prunings' costs)."""
    splits, loader = task
    torch.manual_seed(0)  # the backbone's new classifier too
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    config = NetTailorConfig(skips=1, theta=0.01, blocks_removed=2, student_epochs=1, finetune_epochs=2,
                             prune_blocks=[0, 4, 6, 8], batch_size=16, finetune_prunings=policy)
    seen = []

    def on_epoch(stage, epoch, metrics):
        seen.append((stage, epoch))
        if crash_in is not None and crash_in(stage):
            raise Crash
    with resumable(StageCheckpoints(folder)) if folder else nullcontext():
        outcome = run_nettailor(pretrained, copy.deepcopy(pretrained), config=config, image_size=16,
                                train_loader=loader(splits.train, True), val_loader=loader(splits.val),
                                on_epoch=on_epoch, verbose=False,
                                goal=Goal(accuracy_target=101.0, cost="macs", leaner_than=lambda: bound))
    return outcome, seen, [image_macs(p.model, 16) for p in outcome.prunings]


def test_a_leanest_first_run_continued_under_a_lower_bound_loads_no_pruning_into_another(task, tmp_path):
    """A trial started again may read a lower bound (another trial's model finished meanwhile),
    so its probe (finetune_order.py) can be another pruning. A stage's name says which pruning it
    fine-tunes, so the saved probe is not loaded into the new one: the continued run trains the
    new probe from its first epoch and ends as an uninterrupted run under the lower bound."""
    costs = sorted(_run_by_cost(task, "all")[2])
    n = len(costs)
    assert n >= 3
    with pytest.raises(Crash):  # no bound: the leanest misses, the probe is the costliest (rank n - 1)
        _run_by_cost(task, "leanest_first", folder=tmp_path, crash_in=lambda stage: stage not in ("student", "finetune"))
    lower = costs[n - 2]  # under the probe's cost: the new probe is rank n - 2
    continued, seen, _ = _run_by_cost(task, "leanest_first", lower, folder=tmp_path)
    reference, _, reference_costs = _run_by_cost(task, "leanest_first", lower)
    assert seen == [(f"finetune_{n - 2}", 1), (f"finetune_{n - 2}", 2)]
    assert reference_costs == [costs[0], costs[n - 2]]
    for a, b in zip(continued.prunings, reference.prunings, strict=True):
        assert a.survivors == b.survivors and _same(a.model, b.model)


def test_a_bisect_run_continued_under_a_lower_bound_loads_no_pruning_into_another(task, tmp_path):
    """The same for ``bisect``, whose first fine-tune is the middle pruning of use: cut short in
    it, then started again under a bound only the leanest is within, the run fine-tunes the
    leanest from its first epoch (not the middle one's saved state) and ends as an uninterrupted
    run under that bound."""
    costs = sorted(_run_by_cost(task, "all")[2])
    n = len(costs)
    middle = (n - 1) // 2
    assert middle >= 1
    with pytest.raises(Crash):
        _run_by_cost(task, "bisect", folder=tmp_path, crash_in=lambda stage: stage.startswith("finetune"))
    assert StageCheckpoints(tmp_path).stages[-1]["stage"] == f"finetune_{middle}"  # saved after its first epoch
    continued, seen, continued_costs = _run_by_cost(task, "bisect", costs[0], folder=tmp_path)
    reference, _, reference_costs = _run_by_cost(task, "bisect", costs[0])
    assert seen == [("finetune", 1), ("finetune", 2)]
    assert continued_costs == reference_costs == [costs[0]]
    for a, b in zip(continued.prunings, reference.prunings, strict=True):
        assert a.survivors == b.survivors and _same(a.model, b.model)


def test_transtailor_cut_short_in_its_second_step_ends_as_the_uninterrupted_run(task, tmp_path):
    splits, loader = task
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    config = TransTailorConfig(classifier_epochs=1, full_finetune_epochs=0, factor_epochs=1, finetune_epochs=2,
                               max_iterations=2, tau=100.0, prune_fraction=0.2, batch_size=16)

    reference, resumed, seen = _cut_and_continued(lambda on_epoch: run_transtailor(
        copy.deepcopy(pretrained), config=config, image_size=16, train_loader=loader(splits.train, True),
        val_loader=loader(splits.val), on_epoch=on_epoch, verbose=False), tmp_path, ("finetune_2", 1))
    assert len(reference.submodels) == 3
    assert seen == [("finetune_2", 2)]
    assert resumed.chain == reference.chain
    for a, b in zip(resumed.submodels, reference.submodels, strict=True):
        assert _same(a.load(), b.load())
