"""What every ``edgevid`` subcommand shares: output, the common flags and the error contract.

API:
    emit(args, data, text)   print ``data`` as JSON with ``--json``, else ``text(data)``
    add_json(p)              the ``--json`` flag of a (sub)command
    add_debug(p)             a hidden ``--debug`` flag, so it may also follow the subcommand
    run_command(args) -> int call ``args.func(args)`` under the exit-code contract:
        0 success; BadInput -> one ``edgevid: error:`` line, exit 2; GateFailed -> one
        ``edgevid: gate failed:`` line, exit 1; Ctrl-C -> exit 130; with ``--debug`` the
        BadInput/GateFailed traceback propagates instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from edge.core.errors import EXIT_BAD_INPUT, EXIT_GATE, BadInput, GateFailed

EXIT_INTERRUPTED = 130
LOG_FILE = "edgevid.log"  # third-party output of a demo or sweep, in its output folder (edge.core.chatter)


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON with ``--json``, else as ``text(data)``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text(data))


def add_json(p: argparse.ArgumentParser) -> None:
    """The ``--json`` flag: print the command's result as JSON instead of text."""
    p.add_argument("--json", action="store_true", help="print JSON")


def add_debug(p: argparse.ArgumentParser) -> None:
    """A hidden ``--debug`` after the subcommand; absent, the top-level one's value stands."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed subcommand and map its errors to exit codes (see the module docstring)."""
    try:
        return int(args.func(args) or 0)
    except BadInput as e:
        if args.debug:
            raise
        print(f"edgevid: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except GateFailed as e:
        if args.debug:
            raise
        print(f"edgevid: gate failed: {e}", file=sys.stderr)
        return EXIT_GATE
    except KeyboardInterrupt:
        print("edgevid: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
