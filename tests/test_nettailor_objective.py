"""NetTailor's training objective (Eq. 12), its fine-tune stage and BN-folded training.

The objective is checked against values computed by hand on a network small enough to follow
with pen and paper: one channel, one pixel, two blocks, one proxy into each node.
"""

import copy
import math

import pytest
import torch
from torch import nn

from raytailor.backbones import BlockNetwork, create_backbone
from raytailor.data import TensorLoader, TensorSplit
from raytailor.fold import folded_attributes, folded_copy
from raytailor.nettailor.config import NetTailorConfig
from raytailor.nettailor.graph import dense_paths
from raytailor.nettailor.network import PathNetwork
from raytailor.nettailor.pipeline import build_student, run_nettailor, student_objective, train_paths
from raytailor.train import OptimConfig

DEMO_WEIGHTS = "asset:resnet20_shapes16.safetensors"  # the shipped pre-trained demo backbone


def _conv(weight: float, in_channels: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = weight  # input channel 0 only
    return conv


def _tiny_backbone(w1: float, w2: float) -> BlockNetwork:
    """stem: x -> x[:, 0]; block l: multiply by w_l; classifier: logits (z, -z)."""
    classifier = nn.Linear(1, 2)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        classifier.bias.zero_()
    return BlockNetwork(arch="tiny", stem=_conv(1.0, in_channels=3), blocks=[_conv(w1), _conv(w2)],
                        classifier=classifier)


def _hand_student() -> PathNetwork:
    """Blocks x2 and x0.5, proxies x1 (BN in eval mode with mean 0, var 1, eps 0: the identity),
    attention alpha = 3/4 block1, 1/4 proxy0_1, 1/2 block2, 1/2 proxy1_2."""
    student = PathNetwork(_tiny_backbone(2.0, 0.5), dense_paths(2, skips=1), image_size=1)
    with torch.no_grad():
        for proxy in student.proxies.values():
            proxy.project[0].weight.fill_(1.0)
            proxy.norm.eps = 0.0
        student.attention["block1"].fill_(math.log(3.0))
        for name in ("proxy0_1", "block2", "proxy1_2"):
            student.attention[name].fill_(0.0)
    return student.eval()


def test_objective_matches_values_computed_by_hand():
    student = _hand_student()
    teacher = _tiny_backbone(1.0, 1.0).eval()
    images = torch.zeros(1, 3, 1, 1)
    images[0, 0] = 2.0
    labels = torch.tensor([0])
    # student: node1 = relu(3/4 * 2*2 + 1/4 * 2) = 3.5, node2 = relu(1/2 * 0.5*3.5 + 1/2 * 3.5) = 2.625
    # teacher: node1 = node2 = 2, logits (2, -2); student logits (2.625, -2.625)
    ce = math.log1p(math.exp(-2 * 2.625))
    # Omega (mean of the per-node MSEs and the logits' MSE): (1.5^2 + 0.625^2 + 0.625^2) / 3
    omega = (1.5**2 + 0.625**2 + 0.625**2) / 3
    # E[C]: every path costs 1 MAC of the network's 7 (stem 3, blocks 1 + 1, classifier 2); r = 1 - alpha.
    # block1: 1 - 1/4 - 0 (reads the stem) - r_block2 r_proxy1_2 (1/4) = 1/2
    # proxy0_1: 1 - 3/4 - 0 - 1/4 = 0;  block2 and proxy1_2: 1 - 1/2 - r_block1 r_proxy0_1 (3/16) - 0 = 5/16
    expected_complexity = (1 / 2 + 0 + 5 / 16 + 5 / 16) / 7
    assert student.path_costs.tolist() == pytest.approx([1 / 7] * 4)

    loss, logits, extras = student_objective(student, teacher, gamma1=0.3, gamma2=10.0)(images, labels)
    extras = {k: v.item() for k, v in extras.items()}  # 0-d tensors: fit reads them once per epoch
    assert logits[0].tolist() == pytest.approx([2.625, -2.625])
    assert extras["ce"] == pytest.approx(ce, rel=1e-5)
    assert extras["teacher_loss"] == pytest.approx(omega, rel=1e-5)
    assert extras["expected_complexity"] == pytest.approx(expected_complexity, rel=1e-5)
    assert loss.item() == pytest.approx(ce + 0.3 * expected_complexity + 10.0 * omega, rel=1e-5)

    # the fine-tune stage's objective (gamma1 = 0): no E[C] term at all
    loss, _, extras = student_objective(student, teacher, gamma1=0.0, gamma2=10.0)(images, labels)
    assert "expected_complexity" not in extras
    assert loss.item() == pytest.approx(ce + 10.0 * omega, rel=1e-5)
    # no teacher term: plain cross-entropy
    loss, _, extras = student_objective(student, teacher, gamma1=0.0, gamma2=0.0)(images, labels)
    assert {k: v.item() for k, v in extras.items()} == {"ce": pytest.approx(ce, rel=1e-5)} and loss.item() == pytest.approx(ce, rel=1e-5)


def test_objective_trains_only_task_parameters_and_never_the_teacher():
    student = _hand_student().train()
    for proxy in student.proxies.values():
        proxy.norm.eps = 1e-5  # training mode normalises by the batch: eps must be positive
    teacher = _tiny_backbone(1.0, 1.0).eval()
    images = torch.rand(4, 3, 1, 1) + 0.5
    loss, _, _ = student_objective(student, teacher, gamma1=0.3, gamma2=10.0)(images, torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in [*student.stem.parameters(), *student.blocks.parameters()])
    for name, logit in student.attention.items():  # E[C] and Omega both reach every attention logit
        assert logit.grad is not None and logit.grad.abs().item() > 0, name
    assert student.classifier.weight.grad.abs().sum() > 0


def _split(n: int, classes: int = 3, size: int = 16, seed: int = 0) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    base = torch.randint(0, 256, (classes, 3, size, size), generator=g)
    noise = torch.randint(-30, 30, (n, 3, size, size), generator=g)
    return TensorSplit(images=(base[labels] + noise).clamp(0, 255).to(torch.uint8), labels=labels)


def _loader(split: TensorSplit, train: bool = False) -> TensorLoader:
    return TensorLoader(split, batch_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=train, seed=0)


def _randomise_statistics(network: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in network.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def test_folded_training_step_equals_the_unfolded_one():
    """train_paths runs the frozen stem/blocks and the teacher as BN-folded copies: the loss, the
    metrics and every gradient must be those of the original modules, and the originals come back."""
    pretrained = create_backbone("resnet20", num_classes=3)
    _randomise_statistics(pretrained)
    teacher = copy.deepcopy(pretrained)
    _randomise_statistics(teacher, seed=1)
    student = build_student(pretrained, teacher, skips=2, image_size=16).train()
    images, labels = next(iter(_loader(_split(16))))

    def step(folded: bool):
        student.zero_grad(set_to_none=True)
        if folded:
            objective = student_objective(student, folded_copy(teacher), gamma1=0.3, gamma2=3.0)
            stem, blocks = student.stem, student.blocks
            with folded_attributes(student, ["stem", "blocks"]):
                assert student.stem is not stem and student.blocks is not blocks
                loss, logits, extras = objective(images, labels)
                loss.backward()
            assert student.stem is stem and student.blocks is blocks  # the originals are back
        else:
            loss, logits, extras = student_objective(student, teacher.eval(), gamma1=0.3, gamma2=3.0)(
                images, labels)
            loss.backward()
        grads = {name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None}
        return loss.item(), logits.detach(), {k: v.item() for k, v in extras.items()}, grads

    plain, folded = step(False), step(True)
    assert folded[0] == pytest.approx(plain[0], rel=1e-4)
    torch.testing.assert_close(folded[1], plain[1], rtol=1e-4, atol=1e-4)
    assert folded[2] == pytest.approx(plain[2], rel=1e-4)
    assert plain[3].keys() == folded[3].keys() and len(plain[3]) > 0
    for name, grad in plain[3].items():
        torch.testing.assert_close(folded[3][name], grad, rtol=1e-3, atol=1e-5, msg=name)
    # a folded copy computes the teacher's function with no BatchNorm left
    copied = folded_copy(teacher)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copied.modules())
    torch.testing.assert_close(copied(images), teacher.eval()(images), rtol=1e-4, atol=1e-4)


def test_finetune_stage_has_no_complexity_term_and_leaves_frozen_blocks_unchanged():
    """run_nettailor: the student stage trains with gamma1 > 0, the fine-tune stage with gamma1 = 0
    (paper Sec. 3.5); neither changes a pre-trained tensor (weights or BN statistics)."""
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    teacher = copy.deepcopy(pretrained)
    frozen_before = copy.deepcopy(pretrained.state_dict())
    stages: dict[str, list[dict]] = {}
    config = NetTailorConfig(gamma1=0.5, gamma2=3.0, skips=1, theta=0.0, blocks_removed=2, student_epochs=2,
                             finetune_epochs=2, student_lr=0.05, finetune_lr=0.05, batch_size=16)
    outcome = run_nettailor(
        pretrained, teacher, config=config, image_size=16, train_loader=_loader(_split(48), train=True),
        val_loader=_loader(_split(24, seed=1)), verbose=False,
        on_epoch=lambda stage, epoch, metrics: stages.setdefault(stage, []).append(metrics),
    )
    assert [len(v) for v in stages.values()] == [2, 2] and list(stages) == ["student", "finetune"]
    assert all("expected_complexity" in m and "teacher_loss" in m for m in stages["student"])
    assert all("expected_complexity" not in m and "teacher_loss" in m for m in stages["finetune"])
    # the pre-trained network the run was given is untouched...
    for key, value in pretrained.state_dict().items():
        assert torch.equal(value, frozen_before[key]), key
    # ...and so is every block the tailored model kept (weights and BN statistics)
    model = outcome.model
    assert sum(p.kind == "block" for p in outcome.survivors) == 9 - 2
    for name, block in model.blocks.items():
        original = pretrained.blocks[int(name.removeprefix("block")) - 1].state_dict()
        for key, value in block.state_dict().items():
            assert torch.equal(value, original[key]), (name, key)
    for key, value in model.stem.state_dict().items():
        assert torch.equal(value, pretrained.stem.state_dict()[key]), key


def test_train_paths_fine_tune_moves_task_parameters_only():
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    teacher = copy.deepcopy(pretrained)
    student = build_student(pretrained, teacher, skips=1, image_size=16)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    train_paths(student, teacher, stage="finetune", gamma1=0.0, gamma2=3.0, optim=OptimConfig(1, 0.05),
                train_loader=_loader(_split(32), train=True), val_loader=None, on_epoch=None, verbose=False)
    after = student.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("proxies.", "classifier.", "attention.")) for k in changed), changed
    assert any(k.startswith("attention.") for k in changed) and any(k.startswith("proxies.") for k in changed)


def test_the_students_classifier_starts_from_the_teachers_or_fresh():
    pretrained = create_backbone("resnet20", num_classes=3, weights=DEMO_WEIGHTS)
    teacher = copy.deepcopy(pretrained)
    torch.nn.init.normal_(teacher.classifier.weight)
    for classifier, source in (("teacher", teacher), ("fresh", pretrained)):
        student = build_student(pretrained, teacher, skips=1, image_size=16, classifier=classifier)
        assert torch.equal(student.classifier.weight, source.classifier.weight), classifier
    assert not torch.equal(teacher.classifier.weight, pretrained.classifier.weight)
