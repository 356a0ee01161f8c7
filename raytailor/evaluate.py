"""Accuracy of an exported model on a spec's val or test split (``raytailor evaluate``)."""

from __future__ import annotations

from pathlib import Path

from raytailor.cost import count_params, image_macs
from raytailor.data import TensorLoader
from raytailor.errors import SpecError
from raytailor.export import load_tailored, read_architecture
from raytailor.run import load_data, resolve_device
from raytailor.spec import Spec, load_spec, parse_spec
from raytailor.train import evaluate


def evaluate_export(model_dir: str | Path, *, spec_path: str | Path | None, split: str) -> dict:
    """Accuracy on ``split`` of the data in the spec at ``spec_path``, or, without one, of the
    data the model folder records (exports written since that record exists)."""
    architecture = read_architecture(model_dir)
    expected = architecture["input"]
    spec = load_spec(spec_path) if spec_path is not None else _recorded_spec(model_dir, architecture)
    if expected["image_size"] != spec.data.image_size:
        raise SpecError(
            f"the model takes {expected['image_size']} px images but the spec's data.image_size is "
            f"{spec.data.image_size}; use the spec the model was tailored with"
        )
    device = resolve_device(spec.device)
    model = load_tailored(model_dir, device=device)
    splits = load_data(spec)
    # The model's own normalisation, as recorded at export.
    loader = TensorLoader(getattr(splits, split), batch_size=256, mean=expected["mean"],
                          std=expected["std"], device=device)
    return {
        "split": split, "accuracy": evaluate(model, loader), "samples": len(getattr(splits, split)),
        "params": count_params(model), "macs": image_macs(model, spec.data.image_size),
    }


def _recorded_spec(model_dir: str | Path, architecture: dict) -> Spec:
    data = architecture["input"].get("data")
    if not isinstance(data, dict):
        raise SpecError(f"{model_dir} does not record the data it was tailored on (exported before that "
                        "record existed); pass --spec with the run's spec.yaml")
    return parse_spec({"name": "evaluate", "method": architecture["method"], "backbone": {"arch": architecture["arch"]},
                       "data": data, "device": "auto"})
