"""PathNetwork: structure, frozen statistics, compaction equivalence, independent cost counts."""

import copy
import math

import pytest
import torch
import torch_pruning as tp
from torch import nn

from raytailor.backbones import create_backbone
from raytailor.cost import count_params, image_macs
from raytailor.errors import BackboneError
from raytailor.export import load_tailored, save_tailored
from raytailor.nettailor.compaction import compact
from raytailor.nettailor.graph import Path, dense_paths
from raytailor.nettailor.network import PathNetwork
from raytailor.nettailor.projection import PathCosts
from raytailor.nettailor.pruning import select_survivors


def _student(arch="resnet20", skips=3, image_size=32, classes=5):
    backbone = create_backbone(arch, num_classes=classes)
    return PathNetwork(backbone, dense_paths(backbone.num_blocks, skips), image_size=image_size)


def _randomise(network: PathNetwork, seed: int = 0) -> None:
    """Random attention and proxy/BN parameters so equivalence checks are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.attention.values():
            p.copy_(torch.randn((), generator=g) * 2)
        for m in network.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def test_initial_attention_is_plus_two_block_minus_two_proxy():
    student = _student(skips=3)
    alpha = student.attention_weights()
    node5 = [i for i, p in enumerate(student.paths) if p.dst == 5]
    weights = {student.paths[i].kind: alpha[i].item() for i in node5}
    # node 5 with k=3: the block and three proxies, softmax over [+2, -2, -2, -2]. A proxy gets
    # e^-2 / (e^2 + 3 e^-2) = 0.017362 (two proxies would give 0.017668, four 0.017058)
    assert [student.paths[i].kind for i in node5].count("proxy") == 3
    assert weights["proxy"] == pytest.approx(math.exp(-2) / (math.exp(2) + 3 * math.exp(-2)), rel=1e-6)
    assert weights["proxy"] == pytest.approx(0.017362, abs=1e-6)
    assert weights["block"] == pytest.approx(math.exp(2) / (math.exp(2) + 3 * math.exp(-2)), rel=1e-6)
    assert alpha[node5].sum().item() == pytest.approx(1.0)


def test_frozen_backbone_statistics_do_not_drift_in_train_mode():
    student = _student()
    before = copy.deepcopy(student.blocks.state_dict())
    stem_before = copy.deepcopy(student.stem.state_dict())
    student.train()
    student(torch.randn(8, 3, 32, 32) * 3 + 1)
    for key, value in student.blocks.state_dict().items():
        assert torch.equal(value, before[key]), key
    for key, value in student.stem.state_dict().items():
        assert torch.equal(value, stem_before[key]), key
    assert all(not p.requires_grad for p in student.blocks.parameters())
    assert all(p.requires_grad for p in student.proxies.parameters())


def test_gradients_reach_proxies_and_attention_only():
    student = _student()
    student.train()
    student(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in student.blocks.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.proxies.parameters())
    assert all(p.grad is not None for p in student.attention.values())


@pytest.mark.parametrize("arch,image_size,skips", [("resnet20", 32, 3), ("resnet20", 32, 5), ("wrn26", 64, 2),
                                                   ("efficientnet_b0", 32, 2), ("vgg16_bn", 32, 2)])
def test_compacted_model_equals_pruned_student(arch, image_size, skips):
    student = _student(arch, skips=skips, image_size=image_size)
    _randomise(student, seed=skips)
    alpha = student.attention_weights().detach().tolist()
    survivors = select_survivors(student.paths, alpha, theta=0.2, blocks_removed=3,
                                 last_node=student.num_nodes)
    removed = set(student.paths) - set(survivors)
    assert removed, "the test must actually prune something"
    student.disable(removed)
    compacted = compact(student, survivors)
    student.eval(), compacted.eval()
    x = torch.randn(6, 3, image_size, image_size)
    with torch.no_grad():
        assert torch.allclose(student(x), compacted(x), atol=1e-5)
    # physically smaller: removed modules are gone
    assert len(compacted.blocks) == sum(p.kind == "block" for p in survivors)
    assert len(compacted.proxies) == sum(p.kind == "proxy" for p in survivors)
    assert count_params(compacted) < count_params(student)


@pytest.mark.parametrize("arch,image_size,skips", [("resnet20", 32, 3), ("wrn26", 64, 2), ("efficientnet_b0", 32, 2),
                                                   ("vgg16_bn", 32, 2), ("resnet50", 64, 2)])
def test_projected_costs_are_what_the_compacted_model_measures(arch, image_size, skips):
    """A search judges NetTailor trials on the cost of the pruning the current attention would
    give; that projection must be the exported model's own count, not an approximation."""
    student = _student(arch, skips=skips, image_size=image_size)
    costs = PathCosts.measure(student)
    for seed, (theta, k) in enumerate([(0.2, 3), (0.05, 0), (0.4, 1)]):
        _randomise(student, seed=seed)
        projected = costs.projected(student, theta=theta, blocks_removed=k)
        alpha = student.attention_weights().detach().tolist()
        compacted = compact(student, select_survivors(student.paths, alpha, theta=theta, blocks_removed=k,
                                                      last_node=student.num_nodes))
        assert projected == {"projected_params": count_params(compacted),
                             "projected_macs": image_macs(compacted, image_size),
                             "projected_task_params": count_params(compacted.task_modules())}
    assert costs.projected(student, theta=0.99, blocks_removed=student.num_nodes) == {}  # no path left


def test_projected_accuracy_is_the_compacted_models_and_leaves_the_student_dense():
    from raytailor.data import TensorLoader, TensorSplit
    from raytailor.train import evaluate

    backbone = create_backbone("resnet20", num_classes=5, weights="asset:resnet20_shapes16.safetensors")
    student = PathNetwork(backbone, dense_paths(backbone.num_blocks, 3), image_size=16)  # its answers vary
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, 3, 16, 16), dtype=torch.uint8, generator=g)
    unlabelled = TensorLoader(TensorSplit(images, torch.zeros(60, dtype=torch.int64)), batch_size=60,
                              mean=(0.5,) * 3, std=(0.25,) * 3)
    with torch.no_grad():  # labels: the dense student's own answers, so it scores 100 %
        labels = student.eval()(next(iter(unlabelled))[0]).argmax(dim=1)
    loader = TensorLoader(TensorSplit(images, labels), batch_size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    dense = evaluate(student, loader)
    assert dense == 100.0
    projected = PathCosts.measure(student).projected(student, theta=0.01, blocks_removed=4, val_loader=loader)
    alpha = student.attention_weights().detach().tolist()
    compacted = compact(student, select_survivors(student.paths, alpha, theta=0.01, blocks_removed=4,
                                                  last_node=student.num_nodes))
    assert projected["projected_val_accuracy"] == evaluate(compacted, loader)
    assert projected["projected_val_accuracy"] != dense  # the pruning changed the function
    assert not student.disabled and evaluate(student, loader) == dense


def test_bottleneck_proxies_for_resnet50():
    backbone = create_backbone("resnet50", num_classes=3)
    network = PathNetwork(backbone, [Path(1, 0, "block"), Path(1, 0, "proxy")] +
                          [Path(j, j - 1, "block") for j in range(2, 17)], image_size=64)
    convs = [m for m in network.proxies["proxy0_1"].modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 256]  # 64 // 4 down, then up to node 1's 256
    assert network(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_exported_model_costs_match_independent_counter(tmp_path):
    student = _student(skips=2)
    _randomise(student)
    survivors = select_survivors(student.paths, student.attention_weights().tolist(), theta=0.2,
                                 blocks_removed=2, last_node=student.num_nodes)
    compacted = compact(student, survivors)
    architecture = {"method": "nettailor", "arch": "resnet20", "num_classes": 5,
                    "paths": [p.to_list() for p in compacted.paths],
                    "input": {"image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "class_names": list("abcde")}}
    save_tailored(compacted, tmp_path / "model", architecture=architecture)
    loaded = load_tailored(tmp_path / "model")
    x = torch.randn(1, 3, 32, 32)
    ops, params = tp.utils.count_ops_and_params(loaded, x)
    assert params == count_params(loaded) == count_params(compacted)
    hand_macs = _hand_count_macs(loaded, x)
    assert image_macs(loaded, 32) == hand_macs
    # torch-pruning also counts BN/ReLU/pool elementwise ops, so it is an upper bound here
    assert ops >= hand_macs
    with torch.no_grad():
        assert torch.allclose(loaded(x), compacted.eval()(x), atol=1e-6)


def _hand_count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Independent MAC count from forward hooks: conv = Cout*H*W*Cin/groups*kh*kw, linear = in*out."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def test_proxies_follow_odd_resolutions_and_refuse_floor_pooling_mismatches():
    """A padded stride-2 conv rounds up (84 px: 21 -> 11), which proxies match; VGG's pools
    round down (5 -> 2), which a proxy's max-pool cannot, so that size is refused in one line."""
    student = _student("resnet18", skips=3, image_size=84)
    with torch.no_grad():
        assert student.eval()(torch.randn(1, 3, 84, 84)).shape == (1, 5)
    with pytest.raises(BackboneError, match="vgg16_bn at 40 px: .* divisible by 16"):
        _student("vgg16_bn", skips=3, image_size=40)
