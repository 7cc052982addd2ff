"""The ``edgevid`` argparse front: the registry of subcommands, the parser and ``main``.

API:
    COMMANDS: name -> (help, add_arguments(parser), run(args) -> exit code)
    build_parser() -> argparse.ArgumentParser
    main(argv=None) -> int   0 success, 1 a gate failed, 2 bad input or usage
"""
from __future__ import annotations

import argparse
import logging

from edge.core.chatter import setup_logging
from typing import Callable, Sequence

from edge.cli import build, demo, learn, measure, stream
from edge.cli.common import add_debug, run_command

# name -> (help, add arguments, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "models": ("the zoo: params, GFLOPs (multiply-adds) and input shape", build.add_models, build.cmd_models),
    "convert-ckpt": ("import a PyTorchVideo checkpoint into an edgevid checkpoint", build.add_convert_ckpt,
                     build.cmd_convert_ckpt),
    "data": ("synthetic motion dataset (synth) and video checks (check)", build.add_data, build.cmd_data),
    "compile": ("compile one variant for one target into a deployable artifact", build.add_compile,
                build.cmd_compile),
    "check-ops": ("which nodes a target's operator set rejects, and why", build.add_check_ops, build.cmd_check_ops),
    "lower": ("rewrite an ONNX model into a target's operator set (exact unless --hard-activations)",
              build.add_lower, build.cmd_lower),
    "bench": ("latency of artifacts on this device, stored (also --import agent results, --export)",
              measure.add_bench, measure.cmd_bench),
    "sweep": ("compile and bench a grid of configurations; resumable", measure.add_sweep, measure.cmd_sweep),
    "select": ("the most accurate configuration under a latency/memory/accuracy budget", measure.add_select,
               measure.cmd_select),
    "report": ("the cross-device HTML report (+ report.md) with plots", measure.add_report, measure.cmd_report),
    "train": ("train or fine-tune a zoo model; --mutual: MutualNet across width x resolution x frames",
              learn.add_train, learn.cmd_train),
    "eval": ("top-1 per configuration (width x resolution x frames) on labelled clips", learn.add_eval,
             learn.cmd_eval),
    "prune": ("structured channel pruning to a FLOPs cut, plus KD fine-tune", learn.add_prune, learn.cmd_prune),
    "qat": ("quantization-aware fine-tuning for a target's int8 scheme, then its int8 artifact", learn.add_qat,
            learn.cmd_qat),
    "run": ("stream a video, switching configurations (width/resolution/frames) to hold a latency budget",
            stream.add_run, stream.cmd_run),
    "demo": ("the main job end to end on the embedded defaults", demo.add_demo, demo.cmd_demo),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``edgevid`` parser: global ``--debug``/``-v``, one subparser per COMMANDS entry."""
    parser = argparse.ArgumentParser(
        prog="edgevid", description="Prune, quantize, compile and measure video action-recognition networks "
        "for CPU, GPU and FPGA targets, and pick the configuration that fits a budget.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="info logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_debug(p)
        add(p)
        p.set_defaults(func=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), set up logging, run the subcommand; the exit code."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    setup_logging(level, verbose=args.verbose or args.debug)  # other libraries' chatter: the log file / -v
    return run_command(args)
