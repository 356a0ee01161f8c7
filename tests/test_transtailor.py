"""TransTailor: scaling factors, Taylor importance, exact pruning surgery, Algorithm 1."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp

from raytailor.backbones import BlockNetwork, create_backbone
from raytailor.backbones.cifar import resnet20
from raytailor.cost import count_params, image_macs
from raytailor.data import TensorLoader, load_splits
from raytailor.errors import BackboneError
from raytailor.module_on_disk import ModuleOnDisk
from raytailor.train import evaluate
from raytailor.transtailor import (
    ChannelScale, TransTailorConfig, attach_scales, filter_importance, prune_lowest,
    remove_scales_by_folding, run_transtailor, set_scales,
)
from raytailor.transtailor.gates import scales_of
from raytailor.transtailor.pipeline import within_tau
from raytailor.transtailor.rebuild import layer_widths, rebuild_pruned
from raytailor.transtailor.surgery import layer_macs

SIZE = 16


def _randomise_bn(network: torch.nn.Module) -> None:
    """Non-trivial BN statistics/affine so folding and gradients are exercised."""
    with torch.no_grad():
        for m in network.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def _batches(n: int = 2, dtype=torch.float32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, SIZE, SIZE, generator=g, dtype=dtype), torch.randint(0, 4, (4,), generator=g))
            for _ in range(n)]


def test_config_validation():
    assert TransTailorConfig().prune_fraction == 0.1
    TransTailorConfig(prune_fraction=None, prune_filters=8)
    with pytest.raises(ValueError, match="exactly one"):
        TransTailorConfig(prune_fraction=0.1, prune_filters=8)
    with pytest.raises(ValueError, match="prune_fraction"):
        TransTailorConfig(prune_fraction=1.5)
    with pytest.raises(ValueError, match="tau"):
        TransTailorConfig(tau=-1)


def test_scales_sit_after_every_bn_and_fold_exactly():
    net = resnet20(4)
    _randomise_bn(net)
    x = torch.randn(2, 3, SIZE, SIZE)
    net.eval()
    scales = attach_scales(net)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(scales) == len(bns) == 1 + 9 * 2 + 2
    for seq in [net.stem, *[b.residual for b in net.blocks]]:
        mods = list(seq)
        for i, m in enumerate(mods):
            if isinstance(m, torch.nn.BatchNorm2d):
                assert isinstance(mods[i + 1], ChannelScale)
    set_scales(scales, [torch.rand(s.alpha.numel()) + 0.5 for s in scales], trainable=False)
    with torch.no_grad():
        scaled = net(x)
    remove_scales_by_folding(net)
    assert not any(isinstance(m, ChannelScale) for m in net.modules())
    assert isinstance(net, BlockNetwork)
    with torch.no_grad():
        torch.testing.assert_close(net(x), scaled, rtol=1e-5, atol=1e-5)


def test_importance_matches_finite_differences():
    net = resnet20(4).double()
    _randomise_bn(net)
    scales = attach_scales(net)
    set_scales(scales, [torch.rand(s.alpha.numel(), dtype=torch.float64) + 0.5 for s in scales],
               trainable=True)
    batches = _batches(2, torch.float64)
    betas = filter_importance(net, scales, batches, F.cross_entropy)
    assert net.training and all(s.alpha.requires_grad for s in scales)

    def total_loss() -> float:
        net.eval()
        with torch.no_grad():
            return sum(F.cross_entropy(net(x), y).item() for x, y in batches)

    eps = 1e-5
    for which, channel in [(0, 3), (5, 1), (len(scales) - 1, 7)]:
        alpha = scales[which].alpha
        a = alpha[channel].item()
        with torch.no_grad():
            alpha[channel] = a + eps
            up = total_loss()
            alpha[channel] = a - eps
            down = total_loss()
            alpha[channel] = a
        expected = abs((up - down) / (2 * eps) * a)
        assert betas[which][channel].item() == pytest.approx(expected, rel=1e-3, abs=1e-9)


def test_prune_keeps_residual_shapes_and_cost_counts_agree():
    net = resnet20(4)
    scales = attach_scales(net)
    for p in net.parameters():
        p.requires_grad_(False)
    net.train()
    before = image_macs(net, SIZE)
    betas = [torch.rand(s.alpha.numel()) for s in scales]
    result = prune_lowest(net, scales, betas, image_size=SIZE, macs_budget=before // 5)
    # caller's state survives torch-pruning: still frozen and in train mode
    assert net.training and not any(p.requires_grad for p in net.parameters())
    after = image_macs(net, SIZE)
    assert before - after == result.macs_removed >= before // 5
    assert [b.numel() for b in result.kept_betas] == [s.alpha.numel() for s in scales]
    # residual shapes: the block outputs of one stage share their width
    for block in net.blocks:
        out = block.residual[-2].num_features if isinstance(block.residual[-1], ChannelScale) else None
        assert out == block.residual[-1].alpha.numel()
    widths = {block.residual[-1].alpha.numel() for block in net.blocks[:3]}
    assert len(widths) == 1 and widths == {net.stem[1].num_features}
    assert net(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 4)
    # independent counts: torch-pruning for params, forward hooks for conv/linear MACs
    _, tp_params = tp.utils.count_ops_and_params(net, torch.zeros(1, 3, SIZE, SIZE))
    assert tp_params == count_params(net)
    assert sum(layer_macs(net, image_size=SIZE).values()) == after


def test_prune_takes_exactly_the_lowest_with_stable_ties():
    net = resnet20(4)
    scales = attach_scales(net)
    names = {s: n for n, s in net.named_modules() if isinstance(s, ChannelScale)}
    betas = [torch.ones(s.alpha.numel()) for s in scales]
    index = {names[s]: i for i, s in enumerate(scales)}
    b1 = index["blocks.1.residual.2"]   # scale of blocks.1.residual.0 (internal, uncoupled)
    b4 = index["blocks.4.residual.2"]
    betas[b4][[3, 7]] = 0.5             # ties with b1's 0.5s, but a later group
    betas[b1][[2, 9, 11]] = 0.5
    betas[b1][0] = 0.2
    result = prune_lowest(net, scales, betas, image_size=SIZE, filters=4)
    assert result.removed == {"blocks.1.residual.0": [0, 2, 9, 11]}
    assert net.blocks[1].residual[0].out_channels == 12
    assert torch.equal(result.kept_betas[b1], torch.ones(12))
    # coupled channels: a stage-1 channel is ranked by the sum over its 4 scales
    net = resnet20(4)
    scales = attach_scales(net)
    names = {s: n for n, s in net.named_modules() if isinstance(s, ChannelScale)}
    betas = [torch.full((s.alpha.numel(),), 10.0) for s in scales]
    coupled = [i for i, s in enumerate(scales) if names[s] in
               ("stem.2", "blocks.0.residual.6", "blocks.1.residual.6", "blocks.2.residual.6")]
    for i in coupled:
        betas[i][5] = 1.0   # sum 4 < 10 of every single internal channel
    result = prune_lowest(net, scales, betas, image_size=SIZE, filters=1)
    assert result.removed == {"stem.0": [5]} and result.filters_removed == 4
    assert net.stem[0].out_channels == 15 and net.blocks[3].shortcut[0].in_channels == 15


def test_group_score_mean_ranks_a_coupled_channel_by_its_average_beta():
    """A stage-1 channel coupled over 4 scales, each beta 3 (sum 12, mean 3), against an internal
    channel of beta 5: the sum keeps the coupled one, the mean prunes it first."""
    removed = {}
    for group_score in ("sum", "mean"):
        net = resnet20(4)
        scales = attach_scales(net)
        names = {s: n for n, s in net.named_modules() if isinstance(s, ChannelScale)}
        betas = [torch.full((s.alpha.numel(),), 10.0) for s in scales]
        for i, scale in enumerate(scales):
            if names[scale] in ("stem.2", "blocks.0.residual.6", "blocks.1.residual.6", "blocks.2.residual.6"):
                betas[i][5] = 3.0
            if names[scale] == "blocks.1.residual.2":
                betas[i][0] = 5.0
        removed[group_score] = prune_lowest(net, scales, betas, image_size=SIZE, filters=1,
                                            group_score=group_score).removed
    assert removed == {"sum": {"blocks.1.residual.0": [0]}, "mean": {"stem.0": [5]}}


def test_never_removes_the_last_channel():
    net = resnet20(4)
    scales = attach_scales(net)
    betas = [torch.ones(s.alpha.numel()) for s in scales]
    result = prune_lowest(net, scales, betas, image_size=SIZE, macs_budget=10**12)
    assert all(m.out_channels >= 1 for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert net.stem[0].out_channels == 1 and result.channels_removed > 0
    assert net(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 4)
    # a 1-in 1-out dense conv is not depthwise: the next iteration still finds every group
    remove_scales_by_folding(net)
    scales = attach_scales(net)
    again = prune_lowest(net, scales, [torch.ones(s.alpha.numel()) for s in scales], image_size=SIZE, filters=1)
    assert again.channels_removed == 0  # nothing left to take, and no error


class _BnAsAttribute(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16)

    def forward(self, x):
        return self.bn(self.conv(x))


def test_unsupported_structure_raises_backbone_error():
    net = resnet20(4)
    net.stem = _BnAsAttribute()  # no place for a factor between the BN and its consumer
    with pytest.raises(BackboneError, match="'resnet20'.*stem.bn"):
        attach_scales(net)
    net = resnet20(4)
    net.blocks[0].residual[3] = torch.nn.Conv2d(16, 16, 3, padding=1, groups=4)
    attach_scales(net)
    with pytest.raises(BackboneError, match="blocks.0.residual.4 of 'resnet20' has groups=4"):
        prune_lowest(net, scales_of(net), [torch.ones(s.alpha.numel()) for s in scales_of(net)],
                     image_size=SIZE, filters=1)


@pytest.mark.parametrize("arch,size", [("vgg16_bn", 32), ("efficientnet_b0", 32), ("resnet50", 32)])
def test_pruning_step_on_paper_backbones(arch, size):
    """One z = 20% step on VGG (flatten into a linear layer), EfficientNet (depthwise and
    squeeze-excitation channels coupled with their expansion) and ResNet-50 (bottlenecks):
    predicted MACs are the measured ones, training runs, and the export rebuilds exactly."""
    net = create_backbone(arch, num_classes=5)
    _randomise_bn(net)
    before = image_macs(net, size)
    scales = attach_scales(net)
    betas = [torch.rand(s.alpha.numel(), generator=torch.Generator().manual_seed(i)) for i, s in enumerate(scales)]
    result = prune_lowest(net, scales, betas, image_size=size, macs_budget=before // 5)
    remove_scales_by_folding(net)
    assert result.macs_removed == before - image_macs(net, size) >= before // 5
    assert result.macs_removed < before // 5 + max(layer_macs(net, image_size=size).values())
    net.train()
    net(torch.randn(2, 3, size, size)).logsumexp(1).sum().backward()
    net.eval()
    rebuilt = rebuild_pruned(arch=arch, num_classes=5, widths=layer_widths(net))
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), net(x), atol=1e-5)


def test_two_iterations_give_decreasing_macs_and_a_plain_network():
    splits = load_splits(dataset="synthetic", image_size=SIZE, num_classes=4, samples_per_class=12)
    loader = lambda split, shuffle: TensorLoader(split, batch_size=32, mean=splits.mean, std=splits.std,
                                                 shuffle=shuffle)
    config = TransTailorConfig(prune_fraction=0.15, tau=100.0, max_iterations=2, classifier_epochs=1,
                               factor_epochs=1, finetune_epochs=1, batch_size=32)
    reported = []
    outcome = run_transtailor(resnet20(4), config=config, image_size=SIZE,
                              train_loader=loader(splits.train, True), val_loader=loader(splits.val, False),
                              verbose=False, on_epoch=lambda stage, step, m: reported.append((stage, step, m)))
    macs = [record["macs"] for record in outcome.chain]
    stages = list(dict.fromkeys(stage for stage, _, _ in reported))
    assert stages == ["classifier", "factors_1", "finetune_1", "factors_2", "finetune_2"]
    assert [r["iteration"] for r in outcome.chain] == [0, 1, 2]
    assert all(a > b for a, b in zip(macs, macs[1:]))
    assert outcome.chain[1]["filters_removed"] > 0 and outcome.chosen_iteration == 2
    model = outcome.model
    assert isinstance(model, BlockNetwork)
    assert not any(isinstance(m, ChannelScale) for m in model.modules())
    assert image_macs(model, SIZE) == macs[-1]
    assert model(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 4)
    # every step waits on disk, not in memory, and is loaded back as it was measured
    assert all(isinstance(kept, ModuleOnDisk) and kept.path.is_file() for kept in outcome.submodels)
    val_loader = loader(splits.val, False)
    assert [evaluate(kept.load(), val_loader) for kept in outcome.submodels] == [
        r["val_accuracy"] for r in outcome.chain]
    folder = outcome.submodels[0].path.parent
    del outcome, model
    gc.collect()
    assert not folder.exists(), "the kept steps' folder goes with the last handle to it"


def test_a_chain_told_not_to_go_on_ends_with_the_steps_it_has():
    """Goal.go_on (a search whose budget is spent): W* is always trained; past it each report
    says how many steps are ready, and once go_on says no the chain ends after that epoch's
    report, the step in training left out, with stop_reason cut_short."""
    from raytailor.methods import CANDIDATES_READY, Goal, get_method

    splits = load_splits(dataset="synthetic", image_size=SIZE, num_classes=4, samples_per_class=12)
    loader = lambda split, shuffle: TensorLoader(split, batch_size=32, mean=splits.mean, std=splits.std,
                                                 shuffle=shuffle)
    config = TransTailorConfig(prune_fraction=0.15, tau=100.0, max_iterations=3, classifier_epochs=1,
                               factor_epochs=1, finetune_epochs=2, batch_size=32)
    state, reported = {"go": True}, []

    def on_epoch(stage, step, metrics):
        reported.append((stage, step, metrics.get(CANDIDATES_READY)))
        if (stage, step) == ("finetune_2", 1):
            state["go"] = False

    outcome = get_method("transtailor").tailor(  # through the method contract, as run.py calls it
        resnet20(4), None, config, image_size=SIZE, train_loader=loader(splits.train, True),
        val_loader=loader(splits.val, False), verbose=False, report=on_epoch,
        goal=Goal(accuracy_target=0.0, cost="macs", go_on=lambda: state["go"]))
    assert outcome.cut_short and outcome.details == {"iterations": 1, "stop_reason": "cut_short"}
    assert len(outcome.candidates) == 2 and outcome.chosen == 1  # W* and the first step
    # W*'s last epoch says W* is ready, each step's last epoch that step
    assert reported == [("classifier", 1, 1), ("factors_1", 1, 1), ("finetune_1", 1, 1), ("finetune_1", 2, 2),
                        ("factors_2", 1, 2), ("finetune_2", 1, 2)]


def test_tau_compares_with_the_last_accepted_submodel():
    assert within_tau(90.0, 89.75, tau=0.25) and within_tau(90.0, 91.0, tau=0.0)
    assert not within_tau(90.0, 89.5, tau=0.25)


def _scripted_chain(monkeypatch, accuracies: list[float], *, tau: float, max_iterations: int):
    """run_transtailor with every validation accuracy taken from ``accuracies`` (W*, then one per
    iteration) and no training (all epochs 0): the real pruning, the scripted decisions."""
    from raytailor.transtailor import pipeline

    script = iter(accuracies)
    monkeypatch.setattr(pipeline, "evaluate", lambda network, loader: next(script))
    splits = load_splits(dataset="synthetic", image_size=SIZE, num_classes=4, samples_per_class=6)
    loader = TensorLoader(splits.train, batch_size=24, mean=splits.mean, std=splits.std)
    config = TransTailorConfig(prune_fraction=0.1, tau=tau, max_iterations=max_iterations, classifier_epochs=0,
                               factor_epochs=0, finetune_epochs=0)
    outcome = run_transtailor(resnet20(4), config=config, image_size=SIZE, train_loader=loader,
                              val_loader=loader, verbose=False)
    assert next(script, None) is None, "every scripted accuracy was used"
    return outcome


def test_tau_stop_on_a_scripted_chain(monkeypatch):
    """W* 90, then 91, 90.75, 90.5, 90.25, 89.5 with tau = 0.5. Each of the first four is within
    tau of the last accepted one; 90.25 is 0.75 below the best (91), so a rule comparing with the
    best would stop there. 89.5 is 0.75 below the last accepted (90.25): the stop."""
    outcome = _scripted_chain(monkeypatch, [90.0, 91.0, 90.75, 90.5, 90.25, 89.5], tau=0.5, max_iterations=8)
    assert [r["val_accuracy"] for r in outcome.chain] == [90.0, 91.0, 90.75, 90.5, 90.25, 89.5]
    assert [r["accepted"] for r in outcome.chain] == [True] * 5 + [False]
    assert outcome.stop_reason == "tau" and outcome.stopped_at == 5 and outcome.chosen_iteration == 4
    assert len(outcome.submodels) == 6
    macs = [r["macs"] for r in outcome.chain]
    assert all(a > b for a, b in zip(macs, macs[1:]))  # every step really pruned
    assert image_macs(outcome.model, SIZE) == macs[4]


def test_chain_without_a_large_drop_runs_to_max_iterations(monkeypatch):
    outcome = _scripted_chain(monkeypatch, [90.0, 89.75, 89.5, 89.25], tau=0.25, max_iterations=3)
    assert [r["accepted"] for r in outcome.chain] == [True] * 4
    assert outcome.stop_reason == "max_iterations" and outcome.stopped_at is None
    assert outcome.chosen_iteration == 3
    # a first step below tau stops at once: W* is the chosen sub-model
    outcome = _scripted_chain(monkeypatch, [90.0, 89.0], tau=0.5, max_iterations=3)
    assert outcome.stop_reason == "tau" and outcome.stopped_at == 1 and outcome.chosen_iteration == 0
    assert [r["accepted"] for r in outcome.chain] == [True, False]


def _run_small_chain(config: TransTailorConfig) -> None:
    """``run_transtailor`` on a ResNet-20 and 4 synthetic classes (12 images each), batches of 16."""
    splits = load_splits(dataset="synthetic", image_size=SIZE, num_classes=4, samples_per_class=12)
    loader = lambda split, shuffle: TensorLoader(split, batch_size=16, mean=splits.mean, std=splits.std,
                                                 shuffle=shuffle)
    run_transtailor(resnet20(4), config=config, image_size=SIZE, train_loader=loader(splits.train, True),
                    val_loader=loader(splits.val, False), verbose=False)


def test_each_iteration_prunes_by_the_importance_it_computed(monkeypatch):
    """Algorithm 1, lines 6-7 as wired in the chain: the Taylor importances computed on the
    training set are what the pruning ranks, unchanged (the lowest go; ``prune_lowest``'s own
    tests check that it takes exactly the lowest)."""
    from raytailor.transtailor import pipeline

    computed, ranked = [], []
    real_importance, real_prune = pipeline.filter_importance, pipeline.prune_lowest

    def importance_spy(*args, **kwargs):
        betas = real_importance(*args, **kwargs)
        computed.append([b.clone() for b in betas])
        return betas

    def prune_spy(network, scales, betas, **kwargs):
        ranked.append([b.clone() for b in betas])
        return real_prune(network, scales, betas, **kwargs)

    monkeypatch.setattr(pipeline, "filter_importance", importance_spy)
    monkeypatch.setattr(pipeline, "prune_lowest", prune_spy)
    _run_small_chain(TransTailorConfig(prune_fraction=0.15, tau=100.0, max_iterations=2, classifier_epochs=0,
                                       factor_epochs=1, finetune_epochs=0, batch_size=16))
    assert len(computed) == len(ranked) == 2
    for betas, seen in zip(computed, ranked):
        assert len(betas) == len(seen) and all(torch.equal(b, r) for b, r in zip(betas, seen))
        assert not all(torch.equal(b, b[0].expand_as(b)) for b in betas)  # they do differ by filter


@pytest.mark.parametrize("finetune_scale", ["alpha", "beta"])
def test_importance_aware_finetuning_keeps_the_chosen_factors_fixed(monkeypatch, finetune_scale):
    """During fine-tuning the outputs are scaled, frozen, by the trained alpha (our default) or
    by the Taylor beta (Eq. 6, ``finetune_scale: beta``), each pruned with its channels; never
    by the other one, never by ones."""
    from raytailor.transtailor import pipeline

    after_prune, seen = [], {}
    real_prune, real_train = pipeline.prune_lowest, pipeline._train

    def prune_spy(network, scales, betas, **kwargs):
        result = real_prune(network, scales, betas, **kwargs)
        after_prune.append(([s.alpha.detach().clone() for s in scales], result.kept_betas))
        return result

    def train_spy(network, *, stage, **kwargs):
        if stage.startswith("finetune_"):
            before = [(s.alpha.detach().clone(), s.alpha.requires_grad) for s in scales_of(network)]
            weight = network.classifier.weight.detach().clone()
            real_train(network, stage=stage, **kwargs)
            seen[stage] = (before, [s.alpha.detach().clone() for s in scales_of(network)],
                           not torch.equal(weight, network.classifier.weight))
        else:
            real_train(network, stage=stage, **kwargs)

    monkeypatch.setattr(pipeline, "prune_lowest", prune_spy)
    monkeypatch.setattr(pipeline, "_train", train_spy)
    _run_small_chain(TransTailorConfig(prune_fraction=0.15, tau=100.0, max_iterations=1, classifier_epochs=1,
                                       factor_epochs=2, finetune_epochs=1, factor_lr=0.5, batch_size=16,
                                       finetune_scale=finetune_scale))
    (trained_alphas, kept_betas), = after_prune
    before, after, weights_trained = seen["finetune_1"]
    assert len(before) == len(trained_alphas) > 0
    assert not all(torch.equal(a, torch.ones_like(a)) for a in trained_alphas)  # alpha was trained
    chosen, other = (trained_alphas, kept_betas) if finetune_scale == "alpha" else (kept_betas, trained_alphas)
    for (alpha, trainable), fixed, still in zip(before, chosen, after):
        assert not trainable
        assert torch.equal(alpha, fixed) and torch.equal(still, fixed)  # fixed throughout
    assert not all(torch.allclose(a, b) for a, b in zip(chosen, other))  # not the other one
    assert weights_trained  # while the weights do train


def test_transtailor_tailor_export_and_evaluate_end_to_end(tmp_path, capsys):
    """`raytailor tailor` with method: transtailor -> a physically smaller export that reloads."""
    import json

    import yaml

    import raytailor
    from raytailor.cli import main

    spec = {
        "name": "tiny-transtailor", "method": "transtailor",
        "backbone": {"arch": "resnet20", "weights": "asset:resnet20_shapes16.safetensors"},
        "data": {"dataset": "digits", "image_size": 16, "num_classes": 4, "samples_per_class": 40,
                 "val_fraction": 0.2, "test_fraction": 0.2, "seed": 1},
        "teacher": {"epochs": 1, "lr": 0.05, "batch_size": 32},
        "space": {"prune_fraction": {"low": 0.05, "high": 0.3, "default": 0.2},
                  "tau": {"low": 0.1, "high": 5.0, "default": 5.0}},
        # no classifier epochs: W* keeps an untrained classifier (chance accuracy), so the
        # fine-tuned sub-models after it dominate it and it is a sub-model the run does not keep
        "fixed": {"max_iterations": 2, "classifier_epochs": 0, "factor_epochs": 1, "finetune_epochs": 1,
                  "classifier_lr": 0.05, "batch_size": 32},
        "device": "cpu",
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    assert main(["tailor", str(path), "--out", str(out), "--set", "tau=100"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["hyperparameters"]["tau"] == 100.0 and result["iterations"] == 2
    assert [r["submodel"] for r in result["submodels"]] == [0, 1, 2]
    assert result["submodels"][2]["macs"] < result["submodels"][1]["macs"] < result["submodels"][0]["macs"]
    assert result["chosen_submodel"] == 2 and result["stop_reason"] == "max_iterations"  # tau 100: never stops
    chosen = result["submodels"][result["chosen_submodel"]]
    assert {k: chosen[k] for k in ("macs", "params", "val_accuracy", "test_accuracy")} == {
        k: result[k] for k in ("macs", "params", "val_accuracy", "test_accuracy")}
    assert result["accuracy_target"] == pytest.approx(result["teacher"]["val_accuracy"] - 0.5)  # max_drop default
    # every feasible sub-model no later one dominates is saved beside the chosen one, and is what it says
    for record in result["submodels"]:
        later = [r for r in result["submodels"] if r["submodel"] > record["submodel"]]
        dominated = any(r["val_accuracy"] >= record["val_accuracy"] for r in later)
        feasible = record["val_accuracy"] >= result["accuracy_target"]
        assert record["kept"] == ((feasible and not dominated) or record is chosen)
        folder = out / "submodels" / f"it{record['submodel']}"
        assert folder.is_dir() == (record["kept"] and record is not chosen)
        if folder.is_dir():
            sub = raytailor.load_tailored(folder / "model")
            assert (count_params(sub), image_macs(sub, 16)) == (record["params"], record["macs"])
        capsys.readouterr()
        code = main(["export", str(out), "--trial", f"it{record['submodel']}", "--out", str(tmp_path / folder.name)])
        if record["kept"]:
            assert code == 0
            assert count_params(raytailor.load_tailored(tmp_path / folder.name)) == record["params"]
        else:  # said plainly, in one line, and nothing written
            err = capsys.readouterr().err.strip().splitlines()
            assert code == 2 and len(err) == 1 and f"'it{record['submodel']}'" in err[0] and "was not kept" in err[0]
            assert not (tmp_path / folder.name).exists()
    assert not result["submodels"][0]["kept"], "W* with an untrained classifier should be dominated"
    capsys.readouterr()
    assert main(["export", str(out), "--trial", "it99", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'it99' is not a sub-model" in err[0] and "it0, it1, it2" in err[0]
    assert not (tmp_path / "none").exists()
    assert result["macs"] < result["teacher"]["macs"] and result["params"] < result["teacher"]["params"]

    model = raytailor.load_tailored(out / "model")
    assert count_params(model) == result["params"] == tp.utils.count_ops_and_params(model, torch.zeros(1, 3, 16, 16))[1]
    assert image_macs(model, 16) == result["macs"]
    capsys.readouterr()
    assert main(["evaluate", str(out / "model"), "--spec", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(result["test_accuracy"])


def test_pruned_networks_train_on_channels_last_batches():
    """torch 2.13's oneDNN backward aborted the process ("double free or corruption") on
    channels_last batches through nets pruned by torch-pruning's MetaPruner. Our loaders emit
    channels_last, so pruned ResNet-20 and EfficientNet-B0 must train on them; run in a child
    process so an abort fails this test instead of killing the session."""
    import subprocess
    import sys

    script = """
import torch
from raytailor.backbones import create_backbone
from raytailor.transtailor import attach_scales, prune_lowest, remove_scales_by_folding
for arch in ("resnet20", "efficientnet_b0"):
    net = create_backbone(arch, num_classes=4)
    scales = attach_scales(net)
    betas = [torch.rand(s.alpha.numel()) for s in scales]
    prune_lowest(net, scales, betas, image_size=32, macs_budget=10**6)
    remove_scales_by_folding(net)
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(3):
        x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(net(x), torch.randint(0, 4, (8,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("field,value,message", [
    ("finetune_scale", "gamma", "finetune_scale must be one of alpha, beta, got 'gamma'"),
    ("group_score", "max", "group_score must be one of sum, mean, got 'max'"),
])
def test_paper_options_are_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        TransTailorConfig(**{field: value})
