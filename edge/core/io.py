"""Small file helpers: JSON reading with one clear error, sha256 of a file, and
write-then-rename so that a reader never sees half a file.

- ``read_json(path, what) -> Any``: ``BadInput`` naming the file when missing/unreadable/not JSON.
- ``sha256_file(path) -> str``: hex digest, read in 1 MiB chunks.
- ``atomic_write_bytes(path, data)`` / ``atomic_write_text(path, text)``: temporary file + ``os.replace``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edge.core.errors import BadInput


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


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``atomic_write_bytes`` of UTF-8 ``text``."""
    return atomic_write_bytes(path, text.encode("utf-8"))
