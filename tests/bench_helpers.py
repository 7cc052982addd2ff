"""Helpers of the benchmark tests: a tiny real ONNX Runtime artifact built with
onnx.helper (no torch), synthetic latency records, a fake target whose runner
advances a fake clock."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save_model

from benchmarks.device import DeviceInfo, stable_id
from benchmarks.record import LatencyRecord, Memory, Stats, artifact_digest
from quant.spec import TensorSpec
from targets.base import Artifact
from targets.registry import TARGETS, get_target

TINY_VARIANT = "x3d_xs-w1.0-r8-f2-fp32-p0.0"
TINY_INPUT = (1, 3, 2, 8, 8)


def tiny_onnx(path: Path, classes: int = 5, seed: int = 0) -> Path:
    """Conv3d(3->4, 3x3x3) -> Relu -> global mean -> MatMul: (1, 3, 2, 8, 8) -> (1, classes)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((4, classes)).astype(np.float32), "fc")
    axes = numpy_helper.from_array(np.array([2, 3, 4], dtype=np.int64), "axes")
    nodes = [helper.make_node("Conv", ["clip", "w"], ["c"], pads=[1] * 6),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("ReduceMean", ["r", "axes"], ["m"], keepdims=0),
             helper.make_node("MatMul", ["m", "fc"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("clip", TensorProto.FLOAT, TINY_INPUT)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, (1, classes))],
                              [w, fc, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    save_model(model, str(path))
    return path


def tiny_artifact(folder: Path, target: str = "onnxruntime", variant: str = TINY_VARIANT, seed: int = 0,
                  fidelity: dict | None = None) -> Artifact:
    """A real artifact folder of ``target`` holding the tiny ONNX model."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_onnx(folder / "model.onnx", seed=seed)
    art = Artifact.create(folder, target=target, variant=variant, precision="fp32",
                          input=TensorSpec("clip", TINY_INPUT), output=TensorSpec("logits", (1, 5)),
                          model_file="model.onnx", tools={"test": "1"})
    if fidelity is not None:
        art = art.with_(fidelity=fidelity).write()
    return art


def device(name: str = "testbox", cpus: int = 4) -> DeviceInfo:
    acc: tuple[str, ...] = ()
    return DeviceInfo(stable_id("Test CPU", cpus, 8192, "Linux", "x86_64", acc, ""), name, "Test CPU", cpus,
                      ("avx2", "fma"), 8192, "Linux", "6.0", "x86_64", acc, "", {"onnxruntime": "1.0"}, "3.11")


def record(samples_ms: list[float], variant: str = TINY_VARIANT, target: str = "onnxruntime", threads: int = 2,
           dev: DeviceInfo | None = None, files: dict[str, str] | None = None, created: float = 1000.0,
           fidelity: dict | None = None) -> LatencyRecord:
    """A synthetic measurement with the given samples."""
    files = files or {"model.onnx": "ab" * 32}
    ns = tuple(int(round(x * 1e6)) for x in samples_ms)
    manifest = {"format": "edgevid-artifact", "version": 1, "target": target, "variant": variant,
                "precision": variant.split("-")[4], "input": {"name": "clip", "shape": list(TINY_INPUT)},
                "output": {"name": "logits", "shape": [1, 5]}, "model_file": "model.onnx", "files": files,
                "tools": {}, "fidelity": fidelity, "status": "ok", "notes": {}}
    return LatencyRecord(uuid.uuid4().hex, dev or device(), target, variant, manifest["precision"],
                         artifact_digest(files), "/nowhere", manifest, threads, None, 3, ns, Stats.from_ns(ns), 12.5,
                         20.0, Memory(100.0, 40.0, "VmHWM after clear_refs reset"), fidelity, {}, created)


# ----------------------------------------------------------------------------- a fake target

class FakeRunner:
    """Each call advances the harness's fake clock by the next scheduled duration (ns)."""

    def __init__(self, artifact: Artifact, clock: "FakeClock", options: object) -> None:
        self.artifact = artifact
        self.clock = clock
        self.options = options
        self.affinity_seen = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self.closed = False
        self.calls = 0

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        self.clock.now += self.clock.schedule[self.calls % len(self.clock.schedule)]
        self.calls += 1
        return np.zeros((1, 5), np.float32)

    def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self, schedule_ns: list[int], load_ns: int = 7_000_000) -> None:
        self.now = 0
        self.schedule = schedule_ns
        self.load_ns = load_ns
        self.runners: list[FakeRunner] = []

    def __call__(self) -> int:
        return self.now


class FakeTarget:
    """Registered by tests as TARGETS["fake"] = "bench_helpers:FakeTarget"; CLOCK set by the test."""

    name = "fake"
    clock: FakeClock | None = None

    def __init__(self, options: object) -> None:
        self.options = options

    def available(self) -> bool:
        return True

    def unavailable_reason(self) -> str:
        return ""

    def load(self, artifact: Artifact) -> FakeRunner:
        assert FakeTarget.clock is not None
        FakeTarget.clock.now += FakeTarget.clock.load_ns
        runner = FakeRunner(artifact, FakeTarget.clock, self.options)
        FakeTarget.clock.runners.append(runner)
        return runner


def unavailable_target() -> str | None:
    """A registered target whose runtime is absent here, or None."""
    for name in TARGETS:
        try:
            if not get_target(name).available():
                return name
        except ImportError:
            return name
    return None
