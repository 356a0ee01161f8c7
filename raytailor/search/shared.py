"""What every trial shares, prepared once: data, pre-trained backbone, teacher.

Everything is CPU numpy so the object store hands trials zero-copy, read-only views: Ray puts
``SharedTask`` into the object store once (``tune.with_parameters``), each node fetches it at
most once, and every trial on that node maps the same buffers. Trials never re-read weights
from disk or re-train the teacher.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from raytailor.backbones import BlockNetwork, create_backbone
from raytailor.data import Splits, TensorSplit
from raytailor.run import Prepared, resolve_device
from raytailor.spec import Spec

State = dict[str, np.ndarray]


def to_numpy_state(module: torch.nn.Module) -> State:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _tensor(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # object-store arrays are read-only; nothing writes to them
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


@dataclass
class SharedTask:
    spec: Spec
    arrays: dict[str, np.ndarray]  # {train,val,test}_{images,labels}: uint8 N x 3 x S x S, int64 N
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: list[str]
    backbone_state: State
    teacher_state: State
    teacher_metrics: dict[str, Any]
    accuracy_target: float  # teacher validation accuracy - max_drop, in points
    teacher_key: str = ""  # the teacher cache entry this came from

    @classmethod
    def from_prepared(
        cls, prepared: Prepared, *, teacher_state: State, teacher_metrics: dict, teacher_key: str = ""
    ) -> "SharedTask":
        arrays = {}
        for split in ("train", "val", "test"):
            part: TensorSplit = getattr(prepared.splits, split)
            arrays[f"{split}_images"] = part.images.numpy()
            arrays[f"{split}_labels"] = part.labels.numpy()
        return cls(
            spec=prepared.spec, arrays=arrays, mean=tuple(prepared.splits.mean),
            std=tuple(prepared.splits.std), class_names=list(prepared.splits.class_names),
            backbone_state=to_numpy_state(prepared.pretrained), teacher_state=teacher_state,
            teacher_metrics=teacher_metrics, teacher_key=teacher_key,
            accuracy_target=teacher_metrics["val_accuracy"] - prepared.spec.target.max_drop,
        )

    @property
    def nbytes(self) -> int:
        states = [*self.arrays.values(), *self.backbone_state.values(), *self.teacher_state.values()]
        return int(sum(a.nbytes for a in states))

    def share_backbone_with(self, other: "SharedTask") -> int:
        """Point every backbone tensor equal to ``other``'s at ``other``'s array (the frozen stem
        and blocks; a task's fresh classifier differs and stays its own), so the tasks of one
        search put the backbone into the object store once: Ray serialises an array that two
        tasks hold once (pickle keeps one copy of one object). Returns the bytes now shared."""
        shared = 0
        for key, array in self.backbone_state.items():
            theirs = other.backbone_state.get(key)
            if (theirs is not None and theirs is not array and theirs.dtype == array.dtype
                    and theirs.shape == array.shape and np.array_equal(theirs, array)):
                self.backbone_state[key] = theirs
                shared += array.nbytes
        return shared

    def network_from_state(self, state: State, device: str | torch.device) -> BlockNetwork:
        """The network with ``state``'s tensors, copied into fresh memory on ``device`` (trials
        train their copies; the shared buffers stay read-only). Built on the meta device, so no
        random initialisation is computed only to be overwritten; the strict load fills every
        tensor (a backbone holds no buffer outside its state dict)."""
        with torch.device("meta"):
            network = create_backbone(self.spec.backbone.arch, num_classes=len(self.class_names))
        network.to_empty(device=device)
        network.load_state_dict({k: _tensor(v) for k, v in state.items()}, strict=True)
        return network

    def materialise(self, device: str | None = None) -> tuple[Prepared, BlockNetwork]:
        """(Prepared, teacher) for one trial, built from the shared buffers."""
        device = resolve_device(device or self.spec.device)
        splits = Splits(
            **{split: TensorSplit(_tensor(self.arrays[f"{split}_images"]), _tensor(self.arrays[f"{split}_labels"]))
               for split in ("train", "val", "test")},
            num_classes=len(self.class_names), class_names=self.class_names, mean=self.mean, std=self.std,
        )
        prepared = Prepared(spec=self.spec, splits=splits, pretrained=self.network_from_state(self.backbone_state, device),
                            device=device)
        teacher = self.network_from_state(self.teacher_state, device).eval()
        return prepared, teacher


def serialized_bytes(value: Any) -> int:
    """The bytes of array data ``value`` takes in Ray's object store: Ray pickles with protocol 5
    and keeps each array's buffer out of band, once per array object, as counted here."""
    import pickle

    buffers: list[pickle.PickleBuffer] = []
    inline = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return len(inline) + sum(memoryview(b).nbytes for b in buffers)
