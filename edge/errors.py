"""Error types shared by every layer.  Dependency-free: runners and the on-device
agent may import it without torch.

``BadInput`` is a user error (a file, flag or value that cannot be used): the CLI
prints its message as one line and exits 2.  ``GateFailed`` means the job ran but
a quality gate (accuracy or fidelity floor) failed: exit 1.
"""
from __future__ import annotations


class BadInput(ValueError):
    """Unusable input; the message names the file or value and the problem."""


class GateFailed(RuntimeError):
    """The job ran to the end but a gate (e.g. an accuracy floor) failed."""
