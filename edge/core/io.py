"""Small file helpers: JSON reading with one clear error, sha256 of a file, and
write-then-rename so that a reader never sees half a file.

- ``read_json(path, what) -> Any``: ``BadInput`` naming the file when missing/unreadable/not JSON.
- ``sha256_file(path) -> str``: hex digest, read in 1 MiB chunks.
- ``atomic_write(path, write)``: ``write(tmp)`` into a fresh temporary file beside ``path``, then
  ``os.replace``; ``atomic_write_bytes(path, data)`` / ``atomic_write_text(path, text)`` on top of it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

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


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a fresh temporary file beside ``path``, then rename it onto ``path``:
    ``path`` is either the old file or the whole new one, never half written; on any failure
    the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``atomic_write_bytes`` of UTF-8 ``text``."""
    return atomic_write_bytes(path, text.encode("utf-8"))
