"""``first_line(e) -> str``: an exception as one line for a ``BadInput`` message
(ONNX Runtime's ``[ONNXRuntimeError] : N : CODE :`` prefix dropped)."""
from __future__ import annotations

import re


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception message, without ONNX Runtime's
    '[ONNXRuntimeError] : 1 : FAIL :' prefix."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
