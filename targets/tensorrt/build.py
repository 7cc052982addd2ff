"""TensorRT engine builds: ``trtexec`` (PATH or JetPack's location) or the
TensorRT Python API, from a static-shape ONNX file.

API: ``find_trtexec() -> path | None``, ``trtexec_command(trtexec, onnx, engine,
precision) -> argv``, ``build_with_trtexec(...) -> TensorRT version``,
``build_with_python_api(onnx, engine, precision)``, ``parser_errors(onnx) ->
[reason]``.  ``tensorrt`` is imported when called.
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from edge.core.errors import BadInput, GateFailed

log = logging.getLogger(__name__)

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
WORKSPACE_BYTES = 1 << 30


def find_trtexec() -> str | None:
    """``trtexec`` on PATH, else JetPack's default location, else None."""
    found = shutil.which("trtexec")
    if found:
        return found
    return JETPACK_TRTEXEC if Path(JETPACK_TRTEXEC).is_file() else None


def trtexec_command(trtexec: str, onnx_path: str | Path, engine_path: str | Path, precision: str) -> list[str]:
    """The trtexec command line that builds ``engine_path`` from ``onnx_path`` (no timing run)."""
    cmd = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={engine_path}", "--skipInference",
           f"--memPoolSize=workspace:{WORKSPACE_BYTES >> 20}M"]
    if precision == "fp16":
        cmd.append("--fp16")
    elif precision == "int8":
        cmd.append("--int8")  # explicit quantization: the ONNX model carries Q/DQ nodes
    elif precision != "fp32":
        raise BadInput(f"tensorrt: unknown precision {precision!r}")
    return cmd


def build_with_trtexec(trtexec: str, onnx_path: Path, engine_path: Path, precision: str) -> str:
    """Run trtexec; returns the TensorRT version it reports ('' when it does not say)."""
    cmd = trtexec_command(trtexec, onnx_path, engine_path, precision)
    log.info("building TensorRT engine: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not engine_path.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise GateFailed(f"{onnx_path}: trtexec failed to build the engine (exit {proc.returncode}):\n{tail}")
    m = re.search(r"TensorRT version: ([0-9.]+)", proc.stdout)
    return m.group(1) if m else ""


def build_with_python_api(onnx_path: Path, engine_path: Path, precision: str) -> None:
    """Builder -> network from OnnxParser -> config (FP16/INT8 flag) -> serialized engine."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GateFailed(f"{onnx_path}: TensorRT's ONNX parser refused the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization (Q/DQ nodes), no calibrator
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GateFailed(f"{onnx_path}: TensorRT failed to build the engine (see the TensorRT log above)")
    engine_path.write_bytes(memoryview(serialized).tobytes())


def parser_errors(onnx_path: Path) -> list[str]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return []
    return [f"TensorRT ONNX parser: {parser.get_error(i)}" for i in range(parser.num_errors)]
