"""The floor every layer stands on: error types and exit codes (``errors``),
``Variant`` (``variant``), the closed sets of words (``enums``) and small
JSON/hash/atomic-write helpers (``io``).

Imports no other project module and no torch, onnx or runtime, so the harness,
runners and the on-device agent can use it with numpy alone.
"""
