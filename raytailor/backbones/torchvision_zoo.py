"""The torchvision architectures raytailor re-describes, with their ImageNet weight enums.

Each entry builds the torchvision model (so weights load through torchvision's own enums,
download and cache) and then moves its modules into a :class:`BlockNetwork`. torchvision is
imported only then: importing ``torchvision.models`` costs about a second (it pulls in
torch._dynamo), which a process that only uses the CIFAR-size backbones never pays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from raytailor.backbones.base import BlockNetwork
from raytailor.backbones.efficientnet import from_torchvision_efficientnet
from raytailor.backbones.resnet import from_torchvision_resnet
from raytailor.backbones.vgg import from_torchvision_vgg


def _models():
    from raytailor._torchvision import torchvision

    return torchvision.models


@dataclass(frozen=True)
class TorchvisionArch:
    factory_name: str                   # torchvision.models.<factory_name>
    weights_enum: str                   # name of its weight enum class
    redescribe: Callable[[nn.Module, str], BlockNetwork]

    @property
    def factory(self) -> Callable[..., nn.Module]:
        return getattr(_models(), self.factory_name)

    def build(self, *, imagenet: bool = False) -> nn.Module:
        """The torchvision model with its 1000-way head (ImageNet weights downloaded if asked)."""
        weights = getattr(_models(), self.weights_enum).IMAGENET1K_V1 if imagenet else None
        return self.factory(weights=weights)

    @property
    def weights_url(self) -> str:
        return getattr(_models(), self.weights_enum).IMAGENET1K_V1.url


TORCHVISION_ARCHS: dict[str, TorchvisionArch] = {
    "resnet18": TorchvisionArch("resnet18", "ResNet18_Weights", from_torchvision_resnet),
    "resnet34": TorchvisionArch("resnet34", "ResNet34_Weights", from_torchvision_resnet),
    "resnet50": TorchvisionArch("resnet50", "ResNet50_Weights", from_torchvision_resnet),
    "resnet101": TorchvisionArch("resnet101", "ResNet101_Weights", from_torchvision_resnet),
    "vgg16_bn": TorchvisionArch("vgg16_bn", "VGG16_BN_Weights", from_torchvision_vgg),
    "efficientnet_b0": TorchvisionArch("efficientnet_b0", "EfficientNet_B0_Weights", from_torchvision_efficientnet),
}
