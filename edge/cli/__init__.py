"""The ``edgevid`` command line: argparse front, each subcommand a few lines that call the library.

Exit codes: 0 success, 1 a gate failed, 2 bad input or usage.  Modules: ``app`` (the
COMMANDS registry, ``build_parser``, ``main``), ``common`` (``emit``, ``--json``, the error
contract), and one module per area: ``build`` (models, convert-ckpt, data, compile,
check-ops, lower), ``measure`` (bench, sweep, select, report), ``learn`` (train, eval,
prune, qat), ``stream`` (run), ``demo`` (demo).
"""
from edge.cli.app import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
