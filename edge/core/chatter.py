"""Our output on the terminal, third-party chatter in a log file.

    setup_logging(level, verbose)     stderr: edgevid's own records at ``level``; other
                                      libraries' records only with ``verbose`` (``-v``)
    log_to_file(path)                 every record (INFO and up, any library) also to ``path``
    current_setup() / apply_setup(s)  the same routing in a worker process
    captured(name)                    context manager: what a library prints on
                                      stdout/stderr (NNCF's progress bars, ONNX Runtime's
                                      "Please consider pre-processing" advice) becomes
                                      INFO records of logger ``name``

Python warnings (torch.onnx, torchao, pytree deprecations) are routed to logging
(``py.warnings``) by ``setup_logging``, so they land in the log file too.  Inside
``captured`` file descriptors 1 and 2 are redirected as well, so what a runtime's
C++ core writes there itself (LiteRT's absl lines, "Created TensorFlow Lite XNNPACK
delegate", torch's own log handlers) becomes records of ``name`` too.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

OURS: tuple[str, ...] = ("edge", "quant", "targets", "benchmarks", "calib_data", "edgevid")
FORMAT = "%(levelname)s %(name)s: %(message)s"


class _Ours(logging.Filter):
    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        return self.verbose or record.name.split(".")[0] in OURS


def setup_logging(level: int = logging.WARNING, verbose: bool = False) -> None:
    """Route records: ours to stderr at ``level``, others only when ``verbose``; the root
    logger passes INFO and up (DEBUG with ``level`` DEBUG) on, so that
    :func:`log_to_file` sees what every library says."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_edgevid", False)]:
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_Ours(verbose))
    handler._edgevid = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    for name in ("matplotlib", "PIL", "urllib3", "asyncio", "numba", "h5py"):  # noisy at DEBUG, useless here
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def log_to_file(path: str | Path) -> Path:
    """Append every record the root logger passes (any library) to ``path``; once per path.
    ``BadInput`` naming ``path`` when it cannot be written."""
    from edge.core.errors import BadInput

    path = Path(path).resolve()
    root = logging.getLogger()
    for h in root.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path:
            return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as e:
        raise BadInput(f"{path}: cannot write the log file ({e.strerror or e})") from None
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s " + FORMAT))
    handler._edgevid = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    return path


def current_setup() -> tuple[int, bool, tuple[str, ...]]:
    """(stderr level, verbose, log files) as set here: what a worker process repeats
    (``ProcessPoolExecutor(initializer=apply_setup, initargs=(current_setup(),))``)."""
    root = logging.getLogger()
    level, verbose, files = logging.WARNING, False, []
    for h in root.handlers:
        if not getattr(h, "_edgevid", False):
            continue
        if isinstance(h, logging.FileHandler):
            files.append(h.baseFilename)
        elif isinstance(h, logging.StreamHandler):
            level = h.level
            verbose = any(isinstance(f, _Ours) and f.verbose for f in h.filters)
    return level, verbose, tuple(files)


def apply_setup(setup: tuple[int, bool, tuple[str, ...]]) -> None:
    """Repeat :func:`current_setup`'s result in this process."""
    level, verbose, files = setup
    setup_logging(level, verbose)
    for f in files:
        log_to_file(f)


class _LineLogger(io.TextIOBase):
    """A text stream that logs each complete line (progress-bar redraws collapse to lines)."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.buf = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False  # libraries then print plain lines, not cursor movements

    def write(self, text: str) -> int:
        self.buf += text.replace("\r", "\n")
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info("%s", line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.buf.strip():
            self.logger.info("%s", self.buf.rstrip())
        self.buf = ""


@contextlib.contextmanager
def captured(name: str) -> Iterator[None]:
    """What is printed inside the block - to ``sys.stdout``/``sys.stderr`` or straight to
    file descriptors 1 and 2 - becomes INFO records of logger ``name`` (see the module doc)."""
    stream = _LineLogger(logging.getLogger(name))
    try:
        with _fds_to(stream), contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        stream.flush()


@contextlib.contextmanager
def _fds_to(stream: _LineLogger) -> Iterator[None]:
    """File descriptors 1 and 2 into a temporary file for the block, then its text into ``stream``."""
    fds = []
    for fd in (1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            pass
    if not fds:
        yield
        return
    for s in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            s.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(fd) for fd in fds]
        for fd in fds:
            os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            for fd, keep in zip(fds, saved):
                os.dup2(keep, fd)
                os.close(keep)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            if text:
                stream.write(text)
