"""Import torchvision on a CPU-only torch whose torchvision wheel is a CUDA build.

On such a pairing ``import torchvision`` fails with "operator torchvision::nms does not
exist" (pytorch/vision#9085): the compiled extension does not load, and the Python side then
registers fake kernels for op schemas that were never defined. Defining the two schemas first
makes models, transforms and datasets work; ``torchvision.ops`` kernels and ``torchvision.io``
decoding stay unavailable. The fix is applied here only, and only when the extension fails.
Every process that needs torchvision (Ray workers too) imports it through this module.
"""

from __future__ import annotations

import importlib
import sys
import types

_MISSING_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the schema definitions alive for the process lifetime


def _define_missing_schemas() -> None:
    global _library
    import torch

    if _library is not None:
        return
    _library = torch.library.Library("torchvision", "DEF")
    for name, schema in _MISSING_OP_SCHEMAS.items():
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            _library.define(schema)


def import_torchvision() -> types.ModuleType:
    """Return the torchvision module, applying the schema fix only if the plain import fails."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "models"):
        return sys.modules["torchvision"]
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as error:
        if "does not exist" not in str(error):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _define_missing_schemas()
    return importlib.import_module("torchvision")


torchvision = import_torchvision()
