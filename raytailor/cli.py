"""The one ``raytailor`` entry point. Bad input: one line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from raytailor.errors import RaytailorError, SpecError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_SPECS = {"nettailor": REPO_ROOT / "search_spaces" / "demo.yaml"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        print(f"raytailor: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raytailor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo", help="tailor the embedded offline demo task")
    demo.add_argument("--method", choices=sorted(DEMO_SPECS), default="nettailor")
    demo.add_argument("--out", help="output directory (default: runs/demo-<time>)")

    tailor = commands.add_parser("tailor", help="one tailoring run with fixed hyper-parameters, no Ray")
    tailor.add_argument("spec")
    tailor.add_argument("--out", help="output directory (default: runs/<name>-<time>)")
    tailor.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    describe = commands.add_parser("describe", help="sizes of a backbone and its NetTailor student")
    describe.add_argument("--method", choices=["nettailor"], default="nettailor")
    describe.add_argument("--backbone", required=True)
    describe.add_argument("--num-classes", type=int, required=True)
    describe.add_argument("--image-size", type=int, required=True)
    describe.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    describe.add_argument("--json", action="store_true", help="print one JSON object")

    export = commands.add_parser("export", help="copy a run's tailored model to MODEL_DIR")
    export.add_argument("run_dir")
    export.add_argument("--trial", default="leanest", help="trial id or 'leanest' (search outputs)")
    export.add_argument("--out", required=True)

    evaluate = commands.add_parser("evaluate", help="accuracy of an exported model on a spec's split")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("--spec", required=True)
    evaluate.add_argument("--split", choices=["val", "test"], default="test")
    evaluate.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except RaytailorError as error:
        print(f"raytailor: error: {error}", file=sys.stderr)
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
    from raytailor.run import tailor
    from raytailor.spec import load_spec

    spec_path = DEMO_SPECS[args.method]
    if not spec_path.is_file():
        raise SpecError(f"demo spec {spec_path} is missing; reinstall raytailor from its repository")
    spec = load_spec(spec_path)
    out = Path(args.out) if args.out else _default_out("demo")
    result = tailor(spec, out)
    teacher = result["teacher"]
    print(
        f"demo ({spec.backbone.arch} pre-trained on synthetic shapes -> digits):\n"
        f"  teacher (fine-tuned): test {teacher['test_accuracy']:.2f}%  params {teacher['params']:,}  "
        f"MACs {teacher['macs']:,}\n"
        f"  NetTailor:            test {result['test_accuracy']:.2f}%  params {result['params']:,}  "
        f"MACs {result['macs']:,}  task params {result['task_params']:,}\n"
        f"  blocks kept {result['blocks_kept']}/{result['blocks_total']}, proxies kept {result['proxies_kept']}\n"
        f"  result: {out / 'result.json'}  model: {out / 'model'}"
    )
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
    from raytailor.export import read_architecture

    source = Path(args.run_dir) / "model"
    if not (Path(args.run_dir) / "result.json").is_file():
        raise ExportError(f"{args.run_dir!r} is not a raytailor run directory (no result.json)")
    read_architecture(source)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"--out {str(out)!r} exists and is not empty; choose a new directory")
    shutil.copytree(source, out, dirs_exist_ok=True)
    shutil.copy(Path(args.run_dir) / "result.json", out / "result.json")
    print(f"exported {source} -> {out}")
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
    "demo": _cmd_demo, "tailor": _cmd_tailor, "describe": _cmd_describe,
    "export": _cmd_export, "evaluate": _cmd_evaluate,
}


if __name__ == "__main__":
    sys.exit(main())
