"""The raytailor command: a tiny end-to-end tailor run, export, evaluate, describe, bad input."""

import argparse
import json
import subprocess
import sys

import pytest
import torch
import torch_pruning as tp
import yaml

import raytailor
from raytailor.backbones import create_backbone
from raytailor.cli import main
from raytailor.cost import count_params

TINY = {
    "name": "tiny",
    "method": "nettailor",
    "backbone": {"arch": "resnet20", "weights": "none"},
    "data": {"dataset": "synthetic", "image_size": 16, "num_classes": 4, "samples_per_class": 40,
             "val_fraction": 0.2, "test_fraction": 0.2, "seed": 1},
    "teacher": {"epochs": 2, "lr": 0.05, "batch_size": 32},
    "space": {"skips": {"choices": [1, 2], "default": 2}, "blocks_removed": {"low": 0, "high": 4, "default": 2}},
    "fixed": {"student_epochs": 1, "finetune_epochs": 1, "batch_size": 32, "theta": 0.1},
    "device": "cpu",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    spec = root / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    out = root / "run"
    assert main(["tailor", str(spec), "--out", str(out), "--set", "gamma1=0.5"]) == 0
    return spec, out, json.loads((out / "result.json").read_text())


def test_tailor_writes_result_and_model(tiny_run):
    spec, out, result = tiny_run
    for key in ("val_accuracy", "test_accuracy", "params", "macs", "task_params", "blocks_kept",
                "proxies_kept", "image_size", "teacher"):
        assert key in result
    assert result["hyperparameters"]["gamma1"] == 0.5  # --set reached the run
    assert result["blocks_kept"] <= 9 - 2
    assert result["params"] < result["teacher"]["params"]
    assert (out / "model" / "weights.safetensors").is_file() and (out / "spec.yaml").is_file()


def test_reloaded_export_reproduces_reported_figures(tiny_run, capsys):
    spec, out, result = tiny_run
    model = raytailor.load_tailored(out / "model")
    assert isinstance(model, torch.nn.Module) and not model.training
    assert count_params(model) == result["params"]
    _, tp_params = tp.utils.count_ops_and_params(model, torch.zeros(1, 3, 16, 16))
    assert tp_params == result["params"]
    capsys.readouterr()
    assert main(["evaluate", str(out / "model"), "--spec", str(spec), "--split", "test", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(result["test_accuracy"])
    assert evaluated["macs"] == result["macs"] and evaluated["params"] == result["params"]


def test_evaluate_takes_the_runs_own_spec(tiny_run, capsys):
    """The spec.yaml a run wrote (with its ``resolved`` section) is a spec evaluate accepts."""
    _, out, result = tiny_run
    capsys.readouterr()
    assert main(["evaluate", str(out / "model"), "--spec", str(out / "spec.yaml"), "--split", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(result["val_accuracy"])



def test_evaluate_finds_the_data_from_the_model_folder_alone(tiny_run, tmp_path, capsys):
    """An exported model records its data (absolute root, split seed and fractions): evaluate
    without a spec scores the same split, even from a copy of the folder elsewhere; a folder
    without the record asks for --spec in one line."""
    import shutil

    _, out, result = tiny_run
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(out / "model", moved)
    capsys.readouterr()
    assert main(["evaluate", str(moved), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(result["test_accuracy"])
    architecture = json.loads((moved / "architecture.json").read_text())
    del architecture["input"]["data"]
    (moved / "architecture.json").write_text(json.dumps(architecture))
    assert main(["evaluate", str(moved)]) == 2
    assert "pass --spec" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["nettailor", "transtailor"])
def test_exported_models_trace_with_torch_export_and_a_dynamic_batch(tiny_run, tmp_path, method):
    """Static structure is Python, not tensor branches: torch.export takes the loaded module."""
    folder = tiny_run[1] / "model" if method == "nettailor" else _transtailor_export(tmp_path / "model")
    model = raytailor.load_tailored(folder)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.randn(4, 3, 16, 16),), dynamic_shapes=({0: batch},))
    x = torch.randn(7, 3, 16, 16)  # another batch size than the one traced
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)


def test_every_option_has_help_and_the_version_is_printed(capsys):
    from raytailor.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"raytailor {raytailor.__version__}"
    assert "``" not in parser.format_help()


def test_export_copies_the_model(tiny_run, tmp_path):
    _, out, result = tiny_run
    assert main(["export", str(out), "--out", str(tmp_path / "exported")]) == 0
    assert count_params(raytailor.load_tailored(tmp_path / "exported")) == result["params"]
    assert main(["export", str(out), "--out", str(tmp_path / "exported")]) == 2  # not empty


def _transtailor_export(folder):
    """A filter-pruned ResNet-20 export (every conv of the first stage narrowed to 8 filters)."""
    from raytailor.export import save_tailored
    from raytailor.transtailor.rebuild import layer_widths, rebuild_pruned

    widths = layer_widths(create_backbone("resnet20", num_classes=4))
    model = rebuild_pruned(arch="resnet20", num_classes=4, widths=widths)
    save_tailored(model, folder, architecture={"method": "transtailor", "arch": "resnet20", "num_classes": 4,
                                               "input": {"image_size": 16}, "widths": widths})
    return folder


def _edit_json(folder, change):
    path = folder / "architecture.json"
    architecture = json.loads(path.read_text())
    change(architecture)
    path.write_text(json.dumps(architecture))


TAMPERED = {
    "paths key removed": ("nettailor", lambda f: _edit_json(f, lambda a: a.pop("paths")), "missing key 'paths'"),
    "a path beyond the backbone": ("nettailor", lambda f: _edit_json(f, lambda a: a["paths"].append([40, 41, "block"])),
                                   "does not describe a nettailor model"),
    "a path of an unknown kind": ("nettailor", lambda f: _edit_json(f, lambda a: a["paths"].append([0, 1, "wormhole"])),
                                  "invalid path"),
    "an unknown backbone": ("nettailor", lambda f: _edit_json(f, lambda a: a.update(arch="resnet9000")), "resnet9000"),
    "a class count of a billion": ("nettailor", lambda f: _edit_json(f, lambda a: a.update(num_classes=10**9)),
                                   "does not match architecture.json"),
    "a width of a billion": ("transtailor", lambda f: _edit_json(f, lambda a: a["widths"]["stem.0"].__setitem__(0, 10**9)),
                             "does not match architecture.json"),
    "a truncated weights file": ("transtailor", lambda f: (f / "weights.safetensors").write_bytes(
        (f / "weights.safetensors").read_bytes()[:5000]), "weights.safetensors"),
    "weights of another model": ("transtailor", lambda f: (f / "weights.safetensors").write_bytes(b"\x00" * 64),
                                 "not a readable safetensors file"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_an_edited_or_damaged_model_folder_is_refused_in_one_line(tiny_run, tmp_path, capsys, case):
    import shutil

    method, tamper, message = TAMPERED[case]
    spec, out, _ = tiny_run
    folder = tmp_path / "model"
    if method == "nettailor":
        shutil.copytree(out / "model", folder)
    else:
        _transtailor_export(folder)
    assert raytailor.load_tailored(folder) is not None  # intact, it loads
    tamper(folder)
    with pytest.raises(raytailor.errors.ExportError, match=message.replace("(", r"\(")):
        raytailor.load_tailored(folder)
    capsys.readouterr()
    assert main(["evaluate", str(folder), "--spec", str(spec), "--json"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_describe_resnet34_paper_counts(capsys):
    assert main(["describe", "--method", "nettailor", "--backbone", "resnet34", "--num-classes", "10",
                 "--image-size", "224", "--set", "skips=3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["proxies"] == 45
    assert info["backbone_params"] == 21_284_672
    assert round(info["backbone_macs"] / 1e9, 2) == 3.66
    # independent count: proxy 1x1 conv + BN affine (2,750,208, REFERENCE.md), the classifier
    # 512*10+10, one attention logit per path (16 blocks + 45 proxies)
    assert info["task_params"] == 2_750_208 + 5_130 + 61
    assert info["student_params"] == info["backbone_params"] + info["task_params"]
    assert info["student_macs"] > info["backbone_macs"]


@pytest.mark.parametrize("arch,groups,factors", [
    # ResNet-101: stem + 4 stage groups coupled by the additions + 2 inside each of 33 blocks
    ("resnet101", 1 + 4 + 2 * 33, 52_672),
    # EfficientNet-B0: stem (with the first depthwise conv), 7 stage outputs, 15 expansions, head
    ("efficientnet_b0", 1 + 7 + 15 + 1, 21_008),
])
def test_describe_transtailor_counts_the_groups_it_can_prune(capsys, arch, groups, factors):
    assert main(["describe", "--method", "transtailor", "--backbone", arch, "--num-classes", "200",
                 "--image-size", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    network = create_backbone(arch, num_classes=200)
    assert info["channel_groups"] == groups and info["scaling_factors"] == factors
    assert info["student_params"] == info["task_params"] == count_params(network)  # W*: all fine-tuned
    assert info["backbone_params"] == count_params(network) - (network.classifier.in_features + 1) * 200
    assert info["proxies"] == 0 and info["hyperparameters"]["tau"] == 0.3


def _run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "raytailor.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)  # generous: a loaded 2-core CI machine


def _main(capfd, *args) -> subprocess.CompletedProcess:
    """The command run by ``main`` in this process, its output read at the file descriptors (what a
    subprocess would print, libraries' loggers included), without paying a new process's imports
    for each of the many refusals below; the real entry point's exit code is checked by the tests
    that use ``_run_cli``. An exception ``main`` lets out fails the test, as a traceback would."""
    capfd.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit:
        code = exit.code
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def _no_ray_started() -> bool:
    return "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


@pytest.mark.parametrize("edit,message", [
    ({"colour": 1}, "unknown key 'colour'"),
    ({"data": {**TINY["data"], "image_size": "x"}}, "must be an integer"),
    ({"backbone": {"arch": "resnet9000"}}, "resnet9000"),
    ({"data": {**TINY["data"], "dataset": "imagefolder", "root": "/nonexistent/flowers"}}, "/nonexistent/flowers"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, edit, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({**TINY, **edit}))
    done = _run_cli("tailor", str(spec), "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raytailor: error:") and message in lines[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written


def _spec_text(tmp_path, text: bytes):
    path = tmp_path / "spec.yaml"
    path.write_bytes(text)
    return path


def _yaml(edit: dict) -> bytes:
    return yaml.safe_dump({**TINY, **edit}).encode()


# (what is wrong, the spec file's bytes, extra arguments, where --out goes, what the line says)
REFUSED = [
    ("a key written twice", _yaml({}) + b"name: again\n", [], "out", "key 'name' appears twice"),
    ("a space entry written twice", yaml.safe_dump({k: v for k, v in TINY.items() if k != "space"}).encode() + b"space:\n  skips: {choices: [1]}\n  skips: {choices: [2]}\n",
     [], "out", "key 'skips' appears twice"),
    ("a spec that is not UTF-8", _yaml({}).replace(b"name: tiny", "name: caf\u00e9".encode("latin-1")), [], "out",
     "not UTF-8"),
    ("an objective repeated", _yaml({"objectives": ["accuracy", "macs", "macs"]}), [], "out", "'macs' twice"),
    ("an unknown device", _yaml({"device": "banana"}), [], "out", "device must be auto, cpu, cuda or cuda:N"),
    ("blocks_removed beyond the backbone", _yaml({}), ["--set", "space.blocks_removed.high=12"], "out",
     "blocks_removed may be 12, but resnet20 has 9 blocks"),
    ("a pruning grid beyond the backbone", _yaml({}), ["--set", "prune_blocks=[2,10]"], "out",
     "prune_blocks may be 10, but resnet20 has 9 blocks"),
    ("a missing weights file", _yaml({"backbone": {"arch": "resnet20", "weights": "nowhere.safetensors"}}), [], "out",
     "nowhere.safetensors"),
    ("--out under a regular file", _yaml({}), [], "file/out", "is a file"),
    ("--out that is a file", _yaml({}), [], "file", "is a file, not a folder"),
]
if not torch.cuda.is_available():
    REFUSED.append(("a CUDA device on a machine without one", _yaml({"device": "cuda"}), [], "out", "no CUDA device"))


@pytest.mark.parametrize("command", ["tailor", "search"])
@pytest.mark.parametrize("case", REFUSED, ids=[case[0] for case in REFUSED])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, capfd, command, case):
    """One line, exit 2, no traceback, and nothing written or started: no --out folder, no Ray."""
    _, text, args, out, message = case
    spec = _spec_text(tmp_path, text)
    (tmp_path / "file").write_text("a file where a folder should go")
    before = sorted(p.name for p in tmp_path.iterdir())
    done = _main(capfd, command, str(spec), "--out", str(tmp_path / out), *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "ray" not in done.stderr.lower().replace("raytailor", "")
    assert _no_ray_started()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _search_folder(tmp_path, spec_text: bytes | None = None, journal: bool = True):
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "spec.yaml").write_bytes(_yaml({}) if spec_text is None else spec_text)
    if journal:
        (folder / "optuna.journal").write_text("")
    return folder


def _task_folder(tmp_path):
    """Task "four" of a multi-task search folder (its spec names the task)."""
    multi = {**{k: v for k, v in TINY.items() if k != "data"}, "tasks": [{"name": "four", "data": TINY["data"]}]}
    folder = _search_folder(tmp_path, yaml.safe_dump(multi).encode()) / "four"
    folder.mkdir()
    (folder / "spec.yaml").write_bytes(_yaml({}))
    (folder / "search.json").write_text('{"task": "four"}')
    (folder / "optuna.journal").write_text("")
    return folder


# (what is wrong, the command line given the tmp folder) for the commands that read a folder
BAD_FOLDERS = [
    ("resume a folder that holds no search", lambda t: ["resume", str(t)], "holds no search to resume"),
    ("resume a file", lambda t: ["resume", str(t / "file")], "holds no search to resume"),
    ("resume without the journal", lambda t: ["resume", str(_search_folder(t, journal=False))],
     "holds no search to resume"),
    ("resume a search whose spec.yaml repeats a key", lambda t: ["resume", str(_search_folder(t, _yaml({}) + b"name: x\n"))],
     "key 'name' appears twice"),
    ("resume a search whose spec.yaml is not UTF-8", lambda t: ["resume", str(_search_folder(t, b"name: caf\xe9\n"))],
     "not UTF-8"),
    ("resume one task of a multi-task search", lambda t: ["resume", str(_task_folder(t))],
     "resume that: `raytailor resume"),
    ("pareto of a multi-task search folder", lambda t: ["pareto", str(_task_folder(t).parent)],
     "multi-task search: give one of its task folders"),
    ("export from a multi-task search folder", lambda t: ["export", str(_task_folder(t).parent), "--out",
                                                         str(t / "exported")], "give one of its task folders"),
    ("pareto of a folder that is not a search", lambda t: ["pareto", str(t)], "is not a search folder"),
    ("export from a folder that is no run", lambda t: ["export", str(t), "--out", str(t / "exported")],
     "is neither a tailor run"),
    ("a leanest_first typo", lambda t: ["tailor", str(_spec_text(t, _yaml({}))), "--out", str(t / "out"),
                                       "--set", "finetune_prunings=leanest"],
     "finetune_prunings must be one of all, leanest_first, leanest_up, bisect, got 'leanest'"),
    ("tailor a multi-task spec", lambda t: ["tailor", str(_task_folder(t).parent / "spec.yaml"), "--out",
                                           str(t / "out")], "which only `raytailor search` runs; this command takes"),
    ("a budget of no epochs", lambda t: ["search", str(_spec_text(t, _yaml({}))), "--out", str(t / "out"),
                                         "--set", "search.budget_epochs=0"], "search.budget_epochs must be >= 1"),
    ("a budget below one trial's fewest epochs", lambda t: [
        "search", str(_spec_text(t, _yaml({}))), "--out", str(t / "out"), "--set", "search.budget_epochs=1"],
     "search.budget_epochs is 1, less than the"),
    ("a student_classifier typo", lambda t: ["tailor", str(_spec_text(t, _yaml({}))), "--out", str(t / "out"),
                                            "--set", "student_classifier=new"],
     "student_classifier must be one of teacher, fresh, got 'new'"),
]


@pytest.mark.parametrize("case", BAD_FOLDERS, ids=[case[0] for case in BAD_FOLDERS])
def test_a_bad_folder_or_value_is_one_line_exit_2_and_writes_nothing(tmp_path, capfd, case):
    _, command, message = case
    (tmp_path / "file").write_text("a file where a folder should go")
    args = command(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    done = _main(capfd, *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_the_console_command_ends_with_mains_code_its_whole_output_threads_joined_and_exit_handlers_run(tmp_path):
    """``cli.run`` skips only the interpreter's native teardown: what a Python exit does still
    happens before the process ends."""
    script = (
        "import atexit, sys, threading, time\n"
        "from pathlib import Path\n"
        "from raytailor import cli\n"
        "atexit.register(lambda: print('exit handler ran', flush=True))\n"
        "marker = Path(sys.argv[1])\n"
        "def late(): time.sleep(0.5); marker.write_text('written')\n"
        "threading.Thread(target=late).start()\n"
        "sys.argv = ['raytailor', *sys.argv[2:]]\n"
        "cli.run()\n"
        "print('never here')\n"
    )
    marker = tmp_path / "thread.txt"
    describe = ["describe", "--backbone", "resnet20", "--num-classes", "3", "--image-size", "32", "--json"]
    done = subprocess.run([sys.executable, "-c", script, str(marker), *describe], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    listing, handler = done.stdout.rsplit("\n", 2)[:2]
    assert json.loads(listing)["backbone"] == "resnet20" and handler == "exit handler ran"
    assert marker.read_text() == "written" and "never here" not in done.stdout
    marker.unlink()
    done = subprocess.run([sys.executable, "-c", script, str(marker), *describe[:-1], "--set", "skips=-1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "skips must be >= 0" in done.stderr and marker.read_text() == "written"
    assert done.stdout.strip() == "exit handler ran"


def test_missing_spec_and_bad_flags_exit_2(tmp_path, capfd):
    done = _run_cli("tailor", str(tmp_path / "none.yaml"))  # the real entry point's exit code
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = _main(capfd, "describe", "--backbone", "resnet20", "--num-classes", "3", "--image-size", "32",
                 "--set", "skips=-1")
    assert done.returncode == 2 and "skips must be >= 0" in done.stderr
    done = _main(capfd, "evaluate", str(tmp_path), "--spec", str(tmp_path / "none.yaml"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command,value,message", [
    ("tailor", "prune_blocks=[-1]", "prune_blocks must be integers >= 0, got -1"),
    ("search", "prune_thetas=[1.5]", "prune_thetas must be values in [0, 1), got 1.5"),
])
def test_bad_pruning_grid_is_one_line_exit_2_and_writes_nothing(tmp_path, capfd, command, value, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    done = _main(capfd, command, str(spec), "--out", str(tmp_path / "out"), "--set", value)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


def test_a_full_disk_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """Writing outputs that fails for lack of space (or a read-only folder) names the file."""
    import errno
    import os

    from raytailor import run as run_module

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "teacher": {**TINY["teacher"], "epochs": 0}}))
    monkeypatch.setattr(run_module.Path, "write_text", full)
    assert main(["tailor", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(tmp_path / "out" / "spec.yaml") in err[0]


ONNX_RUN = """
import sys
sys.modules["raytailor"] = None  # a deployer's process: raytailor cannot be imported
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], session.run(None, {session.get_inputs()[0].name: x})[0])
"""


@pytest.mark.parametrize("normalize", [False, True])
def test_export_writes_onnx_and_pt2_that_run_without_raytailor(tiny_run, tmp_path, normalize):
    import numpy as np

    _, out, result = tiny_run
    target = tmp_path / "deploy"
    args = ["export", str(out), "--out", str(target), "--format", "safetensors,onnx,pt2"]
    assert main(args + (["--normalize"] if normalize else [])) == 0
    model = raytailor.load_tailored(target)
    architecture = json.loads((target / "architecture.json").read_text())["input"]
    x = torch.rand(5, 3, 16, 16)  # another batch size than the exporters traced with
    mean, std = (torch.tensor(architecture[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        expected = model((x - mean) / std if normalize else x).numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    done = subprocess.run([sys.executable, "-c", ONNX_RUN, str(target / "model.onnx"), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.abs(np.load(tmp_path / "y.npy") - expected).max() < 1e-4
    program = torch.export.load(str(target / "model.pt2"))
    with torch.no_grad():
        assert np.abs(program.module()(x).numpy() - expected).max() < 1e-4


def test_export_refuses_an_unknown_format_before_writing(tiny_run, tmp_path, capsys):
    _, out, _ = tiny_run
    assert main(["export", str(out), "--out", str(tmp_path / "x"), "--format", "onnx,tflite"]) == 2
    assert "--format must be a comma-separated subset of safetensors, onnx, pt2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
