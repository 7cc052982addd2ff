"""Error types and exit codes shared by every layer.

``BadInput`` is a user error (a file, flag or value that cannot be used): the CLI
prints its message as one line and exits ``EXIT_BAD_INPUT`` (2).  ``GateFailed``
means the job ran but a quality gate (accuracy or fidelity floor) failed:
``EXIT_GATE`` (1).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_GATE = 1
EXIT_BAD_INPUT = 2


class BadInput(ValueError):
    """Unusable input; the message names the file or value and the problem."""


class GateFailed(RuntimeError):
    """The job ran to the end but a gate (e.g. an accuracy floor) failed."""
