"""Backbone registry, the stem/blocks/head contract, and every weight source."""

import pytest
import torch
from safetensors.torch import save_file

from raytailor._torchvision import torchvision
from raytailor.backbones import create_backbone, describe_blocks, list_backbones
from raytailor.backbones.torchvision_zoo import TORCHVISION_ARCHS
from raytailor.cost import count_params, image_macs
from raytailor.errors import BackboneError


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "vgg16_bn", "efficientnet_b0"])
def test_redescribed_torchvision_model_computes_the_same_function(arch):
    entry = TORCHVISION_ARCHS[arch]
    model = entry.build().eval()
    network = entry.redescribe(model, arch).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), network(x))
    assert count_params(network) == count_params(model)


@pytest.mark.parametrize("arch,image_size,blocks,last_channels", [
    ("resnet18", 64, 8, 512), ("resnet34", 64, 16, 512), ("resnet50", 64, 16, 2048),
    ("resnet101", 64, 33, 2048), ("resnet20", 32, 9, 64), ("wrn26", 64, 12, 256),
    ("vgg16_bn", 32, 12, 512), ("efficientnet_b0", 64, 17, 1280),
])
def test_every_backbone_describes_its_blocks(arch, image_size, blocks, last_channels):
    network = create_backbone(arch, num_classes=7)
    infos = describe_blocks(network, image_size)
    assert len(infos) == blocks == network.num_blocks
    assert infos[-1].out_channels == last_channels
    assert all(i.stride in (1, 2) for i in infos)
    assert sum(i.params for i in infos) == count_params(network.blocks)
    assert sum(i.macs for i in infos) < image_macs(network, image_size)
    nodes, logits = network.forward_nodes(torch.randn(2, 3, image_size, image_size))
    assert len(nodes) == blocks + 1 and logits.shape == (2, 7)


def test_forward_nodes_agrees_with_forward():
    network = create_backbone("resnet20", num_classes=3).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(network.forward_nodes(x)[1], network(x))


@pytest.mark.parametrize("arch,params,gmacs", [("vgg16_bn", 138_365_992, 15.47), ("efficientnet_b0", 5_288_548, 0.385)])
def test_paper_backbones_have_their_published_size(arch, params, gmacs):
    """torchvision's published sizes (1000 classes, 224 px), counted on our re-description."""
    network = create_backbone(arch, num_classes=1000)
    assert count_params(network) == params
    assert abs(image_macs(network, 224) / 1e9 - gmacs) < 0.01


def test_resnet34_reference_counts():
    network = create_backbone("resnet34", num_classes=10)
    assert count_params([network.stem, network.blocks]) == 21_284_672
    backbone_macs = image_macs(network, 224) - 512 * 10
    assert abs(backbone_macs / 1e9 - 3.66) < 0.01


def test_unknown_backbone_is_one_line_error():
    with pytest.raises(BackboneError, match="unknown backbone 'vgg99'; choose one of"):
        create_backbone("vgg99", num_classes=10)


def test_imagenet_weights_go_through_torchvision_enum(monkeypatch):
    """The real download path, with the download replaced by a state dict we made."""
    source = torchvision.models.resnet18(num_classes=1000)
    with torch.no_grad():
        source.layer1[0].conv1.weight.fill_(0.123)
    seen = {}

    def fake_download(url, *args, **kwargs):
        seen["url"] = url
        return source.state_dict()

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    network = create_backbone("resnet18", num_classes=5, weights="imagenet")
    assert seen["url"] == torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    assert torch.all(network.blocks[0].residual[0].weight == 0.123)
    assert network.classifier.out_features == 5


def test_imagenet_download_failure_is_one_line(monkeypatch):
    def offline(url, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(BackboneError, match="could not download ImageNet weights for resnet34") as info:
        create_backbone("resnet34", num_classes=5, weights="imagenet")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arch,enum,probe", [
    ("vgg16_bn", "VGG16_BN_Weights", lambda n: n.blocks[0][0].weight),
    ("efficientnet_b0", "EfficientNet_B0_Weights", lambda n: n.blocks[0][0][0].weight),
])
def test_imagenet_weights_of_vgg_and_efficientnet(monkeypatch, arch, enum, probe):
    entry = TORCHVISION_ARCHS[arch]
    source = entry.build()
    with torch.no_grad():
        probe(entry.redescribe(source, arch)).fill_(0.25)  # shares source's tensors
    seen = {}

    def fake_download(url, *args, **kwargs):
        seen["url"] = url
        return source.state_dict()

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    network = create_backbone(arch, num_classes=6, weights="imagenet")
    assert seen["url"] == getattr(torchvision.models, enum).IMAGENET1K_V1.url
    assert torch.all(probe(network) == 0.25) and network.num_classes == 6


def test_small_backbones_have_no_imagenet_weights():
    with pytest.raises(BackboneError, match="resnet20 has no ImageNet weights"):
        create_backbone("resnet20", num_classes=5, weights="imagenet")


def test_local_weights_torchvision_format_pt_and_raytailor_safetensors(tmp_path):
    source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    network = create_backbone("resnet18", num_classes=3, weights=str(tmp_path / "r18.pth"))
    assert torch.equal(network.blocks[3].residual[0].weight, source.layer2[1].conv1.weight)

    small = create_backbone("resnet20", num_classes=10)
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(tmp_path / "r20.safetensors"))
    loaded = create_backbone("resnet20", num_classes=4, weights="r20.safetensors", base_dir=tmp_path)
    assert torch.equal(loaded.blocks[8].residual[3].weight, small.blocks[8].residual[3].weight)
    assert loaded.classifier.out_features == 4  # the source classifier is replaced

    effnet = torchvision.models.efficientnet_b0()  # torchvision key names ("features.1.0.block...")
    save_file({k: v.contiguous() for k, v in effnet.state_dict().items()}, str(tmp_path / "e.safetensors"))
    network = create_backbone("efficientnet_b0", num_classes=3, weights=str(tmp_path / "e.safetensors"))
    assert torch.equal(network.blocks[1][0][0].weight, effnet.features[2][0].block[0][0].weight)


def test_bad_weight_files(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        create_backbone("resnet20", num_classes=3, weights=str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="cannot read backbone weights"):
        create_backbone("resnet20", num_classes=3, weights=str(tmp_path / "junk.pt"))
    wrong = create_backbone("wrn26", num_classes=3)
    torch.save(wrong.state_dict(), tmp_path / "wrn.pt")
    with pytest.raises(BackboneError, match="do not fit this architecture"):
        create_backbone("resnet20", num_classes=3, weights=str(tmp_path / "wrn.pt"))


class _Payload:
    """Unpickling this would create ``path``: what a tampered checkpoint could run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.path),)


def test_pt_weights_are_read_without_running_pickled_code(tmp_path):
    """``.pt`` files go through torch.load(weights_only=True): a pickled callable is refused
    before it runs, in one line."""
    marker = tmp_path / "code-ran"
    state = create_backbone("resnet20", num_classes=3).state_dict()
    torch.save({"state_dict": state, "extra": _Payload(str(marker))}, tmp_path / "tampered.pt")
    with pytest.raises(BackboneError, match="cannot read backbone weights") as info:
        create_backbone("resnet20", num_classes=3, weights=str(tmp_path / "tampered.pt"))
    assert not marker.exists() and "\n" not in str(info.value)
    # the same file through plain pickle would have run it: the test's payload is real
    torch.load(tmp_path / "tampered.pt", weights_only=False)
    assert marker.exists()


def test_every_torch_load_in_the_package_is_weights_only():
    import ast
    from pathlib import Path

    import raytailor

    calls = []
    for path in Path(raytailor.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                keywords = {k.arg: k.value for k in node.keywords}
                ok = isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True
                calls.append((path.name, node.lineno, ok))
    assert calls and all(ok for _, _, ok in calls), calls


def test_demo_asset_is_a_pretrained_resnet20():
    network = create_backbone("resnet20", num_classes=10, weights="asset:resnet20_shapes16.safetensors")
    fresh = create_backbone("resnet20", num_classes=10)
    assert not torch.equal(network.blocks[0].residual[0].weight, fresh.blocks[0].residual[0].weight)
    assert list_backbones() == sorted(list_backbones())
