"""The torchvision architectures raytailor re-describes, with their ImageNet weight enums.

Each entry builds the torchvision model (so weights load through torchvision's own enums,
download and cache) and then moves its modules into a :class:`BlockNetwork`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from raytailor._torchvision import torchvision
from raytailor.backbones.base import BlockNetwork
from raytailor.backbones.efficientnet import from_torchvision_efficientnet
from raytailor.backbones.resnet import from_torchvision_resnet
from raytailor.backbones.vgg import from_torchvision_vgg


@dataclass(frozen=True)
class TorchvisionArch:
    factory: Callable[..., nn.Module]   # torchvision.models.<arch>
    weights_enum: str                   # name of its weight enum class
    redescribe: Callable[[nn.Module, str], BlockNetwork]

    def build(self, *, imagenet: bool = False) -> nn.Module:
        """The torchvision model with its 1000-way head (ImageNet weights downloaded if asked)."""
        weights = getattr(torchvision.models, self.weights_enum).IMAGENET1K_V1 if imagenet else None
        return self.factory(weights=weights)

    @property
    def weights_url(self) -> str:
        return getattr(torchvision.models, self.weights_enum).IMAGENET1K_V1.url


_models = torchvision.models
TORCHVISION_ARCHS: dict[str, TorchvisionArch] = {
    "resnet18": TorchvisionArch(_models.resnet18, "ResNet18_Weights", from_torchvision_resnet),
    "resnet34": TorchvisionArch(_models.resnet34, "ResNet34_Weights", from_torchvision_resnet),
    "resnet50": TorchvisionArch(_models.resnet50, "ResNet50_Weights", from_torchvision_resnet),
    "resnet101": TorchvisionArch(_models.resnet101, "ResNet101_Weights", from_torchvision_resnet),
    "vgg16_bn": TorchvisionArch(_models.vgg16_bn, "VGG16_BN_Weights", from_torchvision_vgg),
    "efficientnet_b0": TorchvisionArch(_models.efficientnet_b0, "EfficientNet_B0_Weights",
                                       from_torchvision_efficientnet),
}
