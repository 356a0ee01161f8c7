"""Task bank: many tasks' models in one folder, the frozen backbone stored and held once."""

import json

import pytest
import torch
import yaml
from safetensors import safe_open

import raytailor
from raytailor.bank import TENSORS_FILE, build_bank, load_bank
from raytailor.cli import main
from raytailor.errors import ExportError

DEMO_WEIGHTS = "asset:resnet20_shapes16.safetensors"


def _spec(name: str, num_classes: int, seed: int) -> dict:
    return {
        "name": name, "method": "nettailor",
        "backbone": {"arch": "resnet20", "weights": DEMO_WEIGHTS},
        "data": {"dataset": "digits", "image_size": 16, "num_classes": num_classes, "samples_per_class": 30,
                 "val_fraction": 0.2, "test_fraction": 0.2, "seed": seed},
        "teacher": {"epochs": 1, "lr": 0.05, "batch_size": 32},
        "space": {"skips": {"choices": [1, 2], "default": 1}, "blocks_removed": {"low": 0, "high": 6, "default": 2}},
        "fixed": {"student_epochs": 1, "finetune_epochs": 1, "batch_size": 32, "theta": 0.01},
        "device": "cpu",
    }


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """Two NetTailor tailor runs on the shipped digits, 3 and 5 classes, on one backbone."""
    root = tmp_path_factory.mktemp("tasks")
    runs = []
    for name, classes, seed in (("digits3", 3, 1), ("digits5", 5, 2)):
        spec = root / f"{name}.yaml"
        spec.write_text(yaml.safe_dump(_spec(name, classes, seed)))
        assert main(["tailor", str(spec), "--out", str(root / name)]) == 0
        runs.append(root / name)
    return root, runs


def test_a_bank_serves_each_task_as_its_exported_model_from_one_copy_of_the_backbone(two_tasks, capsys):
    root, runs = two_tasks
    listing = build_bank(runs, root / "bank")
    bank = raytailor.load_bank(root / "bank")
    assert bank.tasks == ["digits3", "digits5"]
    x = torch.randn(4, 3, 16, 16)
    models = {name: bank.model(name) for name in bank.tasks}
    for name, run in zip(bank.tasks, runs):
        alone = raytailor.load_tailored(run / "model")
        assert torch.max(torch.abs(models[name](x) - alone(x))).item() <= 1e-6
        assert not models[name].training and not any(p.requires_grad for p in models[name].parameters())
        assert not any(t.is_meta for t in [*models[name].parameters(), *models[name].buffers()])
    # the frozen stem is one tensor in memory for both tasks, not a copy each
    a, b = (dict(models[name].named_parameters()) for name in bank.tasks)
    assert a["stem.0.weight"].data_ptr() == b["stem.0.weight"].data_ptr()
    shared = {k for k in a if k in b and a[k].data_ptr() == b[k].data_ptr()}
    assert shared and all(k.startswith(("stem.", "blocks.")) for k in shared)
    # ... and one in the file: every tensor once, so the bank is smaller than the two models
    with safe_open(str(root / "bank" / TENSORS_FILE), framework="pt") as handle:
        stored = sum(t.numel() * t.element_size() for t in map(handle.get_tensor, handle.keys()))
    separate = sum((run / "model" / "weights.safetensors").stat().st_size for run in runs)
    assert listing["bytes"] == stored < separate
    assert listing["separate_bytes"] > listing["bytes"]
    rows = {r["task"]: r for r in listing["tasks"]}
    for name, run in zip(bank.tasks, runs):
        result = json.loads((run / "result.json").read_text())
        assert rows[name]["params"] == result["params"] and rows[name]["macs"] == result["macs"]
        assert rows[name]["own_bytes"] < rows[name]["bytes"]  # the rest is the shared backbone
        assert len(rows[name]["blocks_used"]) == result["blocks_kept"]
    # the listing command reads the bank back
    capsys.readouterr()
    assert main(["bank", str(root / "bank"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == listing


@pytest.mark.parametrize("case", ["not empty", "names", "count", "duplicate"])
def test_bad_bank_input_is_one_line_and_writes_nothing(two_tasks, tmp_path, capsys, case):
    root, runs = two_tasks
    out = tmp_path / "bank"
    args = {"not empty": [*map(str, runs), "--out", str(tmp_path)],
            "names": [*map(str, runs), "--out", str(out), "--names", "only-one"],
            "count": [str(runs[0]), str(runs[1]), "--names", "a,b"],
            "duplicate": [str(runs[0]), str(runs[0]), "--out", str(out)]}[case]
    (tmp_path / "keep").write_text("x")
    capsys.readouterr()
    assert main(["bank", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("raytailor: error: ")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_a_damaged_bank_is_refused_in_one_line(two_tasks, tmp_path):
    root, runs = two_tasks
    build_bank(runs, tmp_path / "bank")
    manifest = tmp_path / "bank" / "bank.json"
    data = json.loads(manifest.read_text())
    key = next(iter(data["tasks"]["digits3"]["weights"]))
    data["tasks"]["digits3"]["weights"][key] = "0" * 32  # a tensor the bank does not hold
    manifest.write_text(json.dumps(data))
    with pytest.raises(ExportError, match="does not match its architecture"):
        load_bank(tmp_path / "bank").model("digits3")
    (tmp_path / "bank" / TENSORS_FILE).write_bytes(b"cut")
    with pytest.raises(ExportError, match="cannot be read"):
        load_bank(tmp_path / "bank")
