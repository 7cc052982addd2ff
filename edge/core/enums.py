"""Closed sets of words shared by every layer, as ``StrEnum``.

A member compares equal to its value (``Precision.INT8 == "int8"``) and serialises
as it in JSON, so artifacts, the store and ``--json`` output keep their words.

- ``Precision``: fp32 | fp16 | int8 (numeric precision of a variant).
- ``ArtifactStatus``: ok | failed | unbuilt (what ``artifact.json`` and the store say).
- ``Statistic``: min | p50 | p90 | p99 | mean (a latency summary a budget names).
"""
from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class ArtifactStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    UNBUILT = "unbuilt"


class Statistic(StrEnum):
    MIN = "min"
    P50 = "p50"
    P90 = "p90"
    P99 = "p99"
    MEAN = "mean"


PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)
