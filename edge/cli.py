"""The ``edgevid`` command line: argparse front, each subcommand a few lines that
call the library.  Exit codes: 0 success, 1 a gate failed, 2 bad input or usage."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

from edge.errors import BadInput, GateFailed

log = logging.getLogger("edgevid")


# ----------------------------------------------------------------------------- output

def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else as ``text(data)``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text(data))


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- commands

def cmd_models(args: argparse.Namespace) -> int:
    from edge.zoo import zoo_table

    rows = zoo_table(args.model or None)
    emit(args, rows, lambda rs: table(
        [(r["name"], f"{r['params'] / 1e6:.2f}M", f"{r['gflops']:.3f}", "x".join(map(str, r["input_shape"])),
          r["description"]) for r in rs],
        ("name", "params", "GFLOPs", "input", "description")))
    return 0


def cmd_convert_ckpt(args: argparse.Namespace) -> int:
    from edge.convert import convert_checkpoint

    result = convert_checkpoint(args.source_format, args.src, args.dst, args.model)
    emit(args, result, lambda r: f"wrote {r['dst']} ({r['model']}, {r['num_classes']} classes, "
                                 f"{r['tensors']} tensors)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    # Until the end-to-end demo lands, the main job shows the zoo.
    return cmd_models(argparse.Namespace(json=args.json, model=None))


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="*", help="only these models (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_convert_ckpt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source_format", required=True, choices=["pytorchvideo"],
                   help="source checkpoint format")
    p.add_argument("src", help="source checkpoint (.pyth)")
    p.add_argument("dst", help="edgevid checkpoint to write")
    p.add_argument("--model", required=True, help="zoo model name, e.g. x3d_s")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


# name -> (help, add arguments, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "models": ("the zoo: params, GFLOPs (multiply-adds) and input shape", _add_models, cmd_models),
    "convert-ckpt": ("import a PyTorchVideo checkpoint into an edgevid checkpoint", _add_convert_ckpt,
                     cmd_convert_ckpt),
    "demo": ("the main job end to end on the embedded defaults", _add_demo, cmd_demo),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgevid", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="info logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        add(p)
        p.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except BadInput as e:
        if args.debug:
            raise
        print(f"edgevid: error: {e}", file=sys.stderr)
        return 2
    except GateFailed as e:
        if args.debug:
            raise
        print(f"edgevid: gate failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgevid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
