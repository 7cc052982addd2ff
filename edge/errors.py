"""Error types shared by every layer.  Dependency-free: runners and the on-device
agent may import it without torch.

``BadInput`` is a user error (a file, flag or value that cannot be used): the CLI
prints its message as one line and exits 2.  ``GateFailed`` means the job ran but
a quality gate (accuracy or fidelity floor) failed: exit 1.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class BadInput(ValueError):
    """Unusable input; the message names the file or value and the problem."""


class GateFailed(RuntimeError):
    """The job ran to the end but a gate (e.g. an accuracy floor) failed."""


def read_json(path: str | Path, what: str) -> Any:
    """The JSON document in ``path``; ``BadInput`` naming the file when it is missing,
    unreadable or not JSON (``what`` names the kind of file, e.g. "results file")."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{path}: not a JSON {what} ({e})") from None
