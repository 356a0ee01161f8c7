"""The one ``raytailor`` entry point. Bad input: one line on stderr, exit code 2."""


from __future__ import annotations

import argparse
import atexit
import errno
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from raytailor.errors import RaytailorError, SpecError

REPO_ROOT = Path(__file__).resolve().parent.parent
DESCRIPTION = ("Tailor pre-trained CNNs to new tasks (NetTailor, TransTailor) and search how to tailor them "
               "on Ray Tune with constrained multi-objective Optuna. Bad input: one line on stderr, exit 2.")
SET_HELP = ("override a spec field (data.image_size=32, search.early_stopping=none) or pin a method "
            "hyper-parameter (gamma1=0.5: taken out of the space); repeat for several")
# a full disk, a read-only or foreign folder: said in one line, not a traceback
_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
DEMO_SPECS = {
    "nettailor": REPO_ROOT / "search_spaces" / "demo.yaml",
    "transtailor": REPO_ROOT / "search_spaces" / "transtailor_demo.yaml",
}


class _Help(argparse.HelpFormatter):
    """Shows an option's default where it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        print(f"raytailor: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from raytailor import __version__
    from raytailor.backbones import list_backbones
    from raytailor.methods import methods

    parser = _Parser(prog="raytailor", description=DESCRIPTION,
                     formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"raytailor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                   formatter_class=_Help)

    address_help = ("join an existing Ray cluster (auto, HOST:PORT, ray://HOST:10001); without it a private Ray "
                    "instance is started, never one already running on the machine")

    demo = command("demo", "search how to tailor the embedded offline demo task")
    demo.add_argument("--method", choices=sorted(DEMO_SPECS), default="nettailor", help="which demo spec")
    demo.add_argument("--trials", type=int, help="number of trials (default: the spec's, 8)")
    demo.add_argument("--out", help="output directory (default: runs/demo-<time>)")
    quiet_help = ("nothing on stderr but errors; stdout keeps the final JSON line (without it, a terminal "
                  "shows a table of the trials every 15 s, anything else one line per event)")
    demo.add_argument("--quiet", action="store_true", help=quiet_help)

    search = command("search", "search a spec's space on Ray Tune, sampled by constrained multi-objective Optuna")
    search.add_argument("spec", help="the YAML spec (search_spaces/ holds examples); with tasks: every task is "
                                     "searched in one run, each in its own folder under --out")
    search.add_argument("--trials", type=int, help="override search.trials (per task, for a spec with tasks:)")
    search.add_argument("--out", help="output directory (default: runs/<name>-<time>)")
    search.add_argument("--address", help=address_help)
    search.add_argument("--storage", help="Ray storage for trial results (s3://bucket/path or a shared "
                                           "file system path; needed on multi-node clusters)")
    search.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    search.add_argument("--quiet", action="store_true", help=quiet_help)

    resume = command("resume", "continue an interrupted search where its folder is now")
    resume.add_argument("run_dir", help="the search folder")
    resume.add_argument("--address", help=address_help)
    resume.add_argument("--quiet", action="store_true", help=quiet_help)

    pareto = command("pareto", "rebuild the Pareto front of one or more searches")
    pareto.add_argument("run_dirs", nargs="+", help="search folders")
    pareto.add_argument("--objectives", default="accuracy,macs",
                        help="comma-separated: accuracy first, then any of macs, params, task_params")
    pareto.add_argument("--out", help="write the front as Parquet")
    pareto.add_argument("--plot", help="write the front plot as PNG")

    tailor = command("tailor", "one tailoring run with fixed hyper-parameters, no Ray")
    tailor.add_argument("spec", help="the YAML spec (its space defaults and fixed values are used)")
    tailor.add_argument("--out", help="output directory (default: runs/<name>-<time>)")
    tailor.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)

    describe = command("describe", "sizes of a backbone and of what a method trains on it")
    describe.add_argument("--method", choices=sorted(methods()), default="nettailor", help="the tailoring method")
    describe.add_argument("--backbone", required=True, choices=list_backbones(), metavar="ARCH",
                          help=f"one of {', '.join(list_backbones())}")
    describe.add_argument("--num-classes", type=int, required=True, help="classes of the target task")
    describe.add_argument("--image-size", type=int, required=True, help="input size in pixels")
    describe.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="a method hyper-parameter, e.g. skips=3")
    describe.add_argument("--json", action="store_true", help="print one JSON object")

    export = command("export", "copy a run's or a search trial's model to MODEL_DIR")
    export.add_argument("run_dir", help="a tailor run's or a search's folder")
    export.add_argument("--trial", default="leanest",
                        help="a search: a trial_id from trials.parquet (TransTailor sub-models are ID-itK) or "
                             "'leanest' (default); a tailor run: 'leanest' (the chosen model) or itK (a kept "
                             "TransTailor sub-model)")
    export.add_argument("--out", required=True, help="the new model folder (must not exist or be empty)")
    export.add_argument("--format", default="safetensors",
                        help="comma-separated: safetensors (always written: what load_tailored reads), onnx "
                             "(model.onnx, runs with onnxruntime alone), pt2 (model.pt2, a torch.export program)")
    export.add_argument("--normalize", action="store_true",
                        help="bake the input normalisation into onnx / pt2: they then take RGB in [0, 1]")

    bank = command("bank", "gather one model per task into a bank that stores every shared tensor "
                           "(the frozen backbone) once; without --out, list the bank at FOLDER")
    bank.add_argument("folders", nargs="+", metavar="FOLDER",
                      help="search or tailor run folders, one per task (a multi-task search folder: each of its "
                           "tasks), or, without --out, one bank folder")
    bank.add_argument("--out", help="the new bank folder (must not exist or be empty)")
    bank.add_argument("--names", help="comma-separated task names, one per task (default: a multi-task search's "
                                      "task names, else each spec's name)")
    bank.add_argument("--trial", default="leanest",
                      help="which model of each folder, as for export: 'leanest' (default: the leanest feasible)")
    bank.add_argument("--json", action="store_true", help="print the listing as one JSON object")
    evaluate = command("evaluate", "accuracy of an exported model on its data's (or a spec's) split")
    evaluate.add_argument("model_dir", help="an exported model folder")
    evaluate.add_argument("--spec", help="a spec with the task's data (a run's own spec.yaml works); "
                          "default: the data the model folder records")
    evaluate.add_argument("--split", choices=["val", "test"], default="test", help="which split to score")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except RaytailorError as error:
        print(f"raytailor: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in _STORAGE_ERRORS:
            raise
        where = f" {error.filename}" if error.filename else ""
        print(f"raytailor: error: cannot write{where}: {error.strerror}; free space or choose a writable "
              "--out (what was written before stays)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raytailor: interrupted", file=sys.stderr)
        return 130


def _default_out(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _cmd_tailor(args: argparse.Namespace) -> int:
    from raytailor.run import tailor
    from raytailor.spec import load_spec

    spec = load_spec(args.spec, args.overrides)
    out = Path(args.out) if args.out else _default_out(spec.name)
    result = tailor(spec, out)
    print(json.dumps({k: result[k] for k in ("val_accuracy", "test_accuracy", "params", "macs", "task_params")}))
    print(f"wrote {out / 'result.json'} and {out / 'model'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from raytailor.spec import load_spec

    spec_path = DEMO_SPECS[args.method]
    if not spec_path.is_file():
        raise SpecError(f"demo spec {spec_path} is missing; reinstall raytailor from its repository")
    overrides = [f"search.trials={args.trials}"] if args.trials is not None else []
    return _search(load_spec(spec_path, overrides), Path(args.out) if args.out else _default_out("demo"),
                   verbose=not args.quiet)


def _cmd_search(args: argparse.Namespace) -> int:
    from raytailor.spec import load_search_spec

    overrides = list(args.overrides) + ([f"search.trials={args.trials}"] if args.trials is not None else [])
    spec = load_search_spec(args.spec, overrides)
    return _search(spec, Path(args.out) if args.out else _default_out(spec.name),
                   address=args.address, storage=args.storage, verbose=not args.quiet)


def _search(spec, out: Path, **kwargs) -> int:
    from raytailor.search import run_search

    best = run_search(spec, out, **kwargs)
    print(json.dumps({"out": str(out), "leanest": best}, default=str))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from raytailor.search import resume_search

    best = resume_search(args.run_dir, address=args.address, verbose=not args.quiet)
    print(json.dumps({"out": str(args.run_dir), "leanest": best}, default=str))
    return 0


def _cmd_pareto(args: argparse.Namespace) -> int:
    from raytailor.pareto import rebuild_front

    front = rebuild_front(args.run_dirs, objectives=args.objectives.split(","), out=args.out, plot=args.plot)
    if not front:
        print(f"raytailor: the front is empty: no completed model of {', '.join(args.run_dirs)} met its "
              "accuracy target", file=sys.stderr)
    for row in front:  # the model's metrics, feasible, and the hyper-parameters it was tailored with
        print(json.dumps({k: v for k, v in row.items() if k not in ("on_front", "chosen", "reason")}, default=str))
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from raytailor.describe import describe

    info = describe(method=args.method, arch=args.backbone, num_classes=args.num_classes,
                    image_size=args.image_size, overrides=args.overrides)
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:>16}  {value:,}" if isinstance(value, int) else f"{key:>16}  {value}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from raytailor.errors import ExportError
    from raytailor.export_run import find_model

    from raytailor.deploy import parse_formats, write_formats

    formats = parse_formats(args.format)
    source, result = find_model(Path(args.run_dir), args.trial)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"--out {str(out)!r} exists and is not empty; choose a new directory")
    shutil.copytree(source, out, dirs_exist_ok=True)
    if result is not None and result.is_file():
        shutil.copy(result, out / "result.json")
    try:
        written = write_formats(out, formats, normalize=args.normalize)
    except ExportError:
        shutil.rmtree(out)  # no half-exported folder
        raise
    print(f"exported {source} -> {out}" + "".join(f"\n  {path}" for path in written))
    return 0


def _cmd_bank(args: argparse.Namespace) -> int:
    from raytailor.bank import build_bank, format_listing, load_bank
    from raytailor.errors import ExportError

    if args.out is None:
        if len(args.folders) != 1 or args.names:
            raise ExportError("to build a bank give --out BANK; to list one give only its folder")
        listing = load_bank(args.folders[0]).describe()
    else:
        names = [n.strip() for n in args.names.split(",")] if args.names else None
        listing = build_bank([Path(f) for f in args.folders], Path(args.out), names=names, trial=args.trial)
    print(json.dumps(listing) if args.json else format_listing(listing))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from raytailor.evaluate import evaluate_export

    result = evaluate_export(args.model_dir, spec_path=args.spec, split=args.split)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.split} accuracy {result['accuracy']:.2f}%  params {result['params']:,}  MACs {result['macs']:,}")
    return 0


_COMMANDS = {
    "demo": _cmd_demo, "search": _cmd_search, "resume": _cmd_resume, "tailor": _cmd_tailor,
    "describe": _cmd_describe, "pareto": _cmd_pareto, "export": _cmd_export, "evaluate": _cmd_evaluate,
    "bank": _cmd_bank,
}


def run() -> None:
    """The ``raytailor`` console command (and ``python -m raytailor.cli``): ``main``, then the
    end of the process. Everything a Python exit does runs (threads joined, exit handlers: Ray's
    shutdown, logging's flush); the interpreter's own teardown after that, about 1 s of freeing
    torch's and Ray's native libraries that writes nothing, is skipped. ``main`` is what tests
    and other Python code call."""
    code = main()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run()
