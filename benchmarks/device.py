"""Device fingerprint: what a latency figure was measured on.

``fingerprint(name)`` reads, without root and without torch:

* CPU model - ``/proc/cpuinfo`` ("model name"; on ARM "Hardware"/"Model" or the
  implementer/part codes), else ``platform.processor()``; logical CPUs
  (``os.cpu_count``) and the CPUs this process may run on (its affinity);
* ISA flags that matter for inference kernels - x86 ``avx2``, ``fma``,
  ``avx512*``, ``avx512_vnni``/``avx_vnni``, ``amx_*``; ARM ``neon``/``asimd``,
  ``asimddp`` (dot product), ``asimdhp``/``fphp`` (fp16), ``i8mm``, ``bf16``,
  ``sve``/``sve2``; from the "flags"/"Features" lines of ``/proc/cpuinfo``
  (aarch64 kernels say ``asimd`` for NEON: ``neon`` is added then);
* memory - ``MemTotal`` of ``/proc/meminfo`` (else ``sysconf``);
* OS and architecture (``platform``);
* accelerators - GPU names from ``nvidia-smi`` when it is on PATH, the board
  model from ``/proc/device-tree/model`` (Jetson, Raspberry Pi);
* runtime versions - ``importlib.metadata`` for onnxruntime(-gpu), openvino,
  ai-edge-litert, tflite-runtime, tensorrt and numpy, when installed.

``id`` is a stable hash of the parts that do not change between runs or
updates: CPU model, logical CPUs, memory rounded to GiB, OS name and
architecture, accelerators and board (not the kernel release, not runtime
versions, not the name).  ``name`` is user-given (``--device jetson-orin-nano``,
default the hostname); two power modes of one board can share an id under two
names.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edge.core.errors import BadInput

RUNTIME_PACKAGES: tuple[str, ...] = (
    "onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "openvino", "ai-edge-litert", "tflite-runtime",
    "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "numpy",
)
# Flags worth recording (the rest of /proc/cpuinfo's list is noise for inference).
ISA_FLAGS: tuple[str, ...] = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2",
)
_ISA_PREFIXES = ("avx512",)  # every avx512 sub-extension is kept
NVIDIA_SMI_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DeviceInfo:
    """One device as measured: hardware, OS, runtimes, a stable ``id`` and a user-given ``name``."""

    id: str
    name: str
    cpu_model: str
    cpus: int
    isa: tuple[str, ...]
    memory_mb: int
    os: str
    os_release: str
    arch: str
    accelerators: tuple[str, ...] = ()
    board: str = ""
    runtimes: Mapping[str, str] = field(default_factory=dict)
    python: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["isa"], d["accelerators"], d["runtimes"] = list(self.isa), list(self.accelerators), dict(self.runtimes)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "device") -> "DeviceInfo":
        try:
            return cls(str(d["id"]), str(d["name"]), str(d["cpu_model"]), int(d["cpus"]),
                       tuple(str(x) for x in d.get("isa", ())), int(d["memory_mb"]), str(d["os"]),
                       str(d.get("os_release", "")), str(d["arch"]),
                       tuple(str(x) for x in d.get("accelerators", ())), str(d.get("board", "")),
                       {str(k): str(v) for k, v in dict(d.get("runtimes", {})).items()}, str(d.get("python", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"{where}: malformed device fingerprint ({type(e).__name__}: {e})") from None

    @property
    def summary(self) -> str:
        """One line: name, id, CPU, cores, memory, accelerators."""
        acc = f", {' + '.join(self.accelerators)}" if self.accelerators else ""
        board = f", {self.board}" if self.board else ""
        return (f"{self.name} [{self.id}]: {self.cpu_model}, {self.cpus} CPUs, {self.memory_mb / 1024:.1f} GiB"
                f"{acc}{board}, {self.os} {self.arch}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """First value of each key in /proc/cpuinfo."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def cpu_model(cpuinfo: str | None = None) -> str:
    info = _cpuinfo_fields(_read("/proc/cpuinfo") if cpuinfo is None else cpuinfo)
    for key in ("model name", "Hardware", "Model", "cpu model", "Processor"):
        if info.get(key):
            return re.sub(r"\s+", " ", info[key])
    if "CPU implementer" in info:  # aarch64 without a model name: the MIDR codes identify the core
        return f"ARM implementer {info['CPU implementer']} part {info.get('CPU part', '?')}"
    if platform.system() == "Darwin" and shutil.which("sysctl"):
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def isa_flags(cpuinfo: str | None = None, arch: str | None = None) -> tuple[str, ...]:
    """Inference-relevant ISA extensions, sorted (see ``ISA_FLAGS``)."""
    info = _cpuinfo_fields(_read("/proc/cpuinfo") if cpuinfo is None else cpuinfo)
    raw = set((info.get("flags") or info.get("Features") or "").split())
    keep = {f for f in raw if f in ISA_FLAGS or f.startswith(_ISA_PREFIXES)}
    if "asimd" in keep and (arch or platform.machine()).lower() in ("aarch64", "arm64"):
        keep.add("neon")  # aarch64 kernels call NEON "asimd"
    if not raw and (arch or platform.machine()).lower() == "arm64" and platform.system() == "Darwin":
        keep |= {"neon", "asimd"}  # Apple silicon: NEON is architectural, there is no /proc/cpuinfo
    return tuple(sorted(keep))


def memory_mb() -> int:
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", _read("/proc/meminfo"), re.M)
    if m:
        return int(m.group(1)) // 1024
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20))
    except (ValueError, OSError, AttributeError):
        return 0


def accelerators() -> tuple[str, ...]:
    """GPU names from ``nvidia-smi`` (one per GPU) when it is on PATH and answers."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return ()
    if out.returncode != 0:
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip())


def board_model() -> str:
    """The device-tree model (Jetson, Raspberry Pi, most ARM boards); empty elsewhere."""
    return _read("/proc/device-tree/model").replace("\x00", "").strip()


def runtime_versions() -> dict[str, str]:
    out = {}
    for pkg in RUNTIME_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def stable_id(cpu: str, cpus: int, mem_mb: int, os_name: str, arch: str, accel: tuple[str, ...],
              board: str) -> str:
    """16 hex digits of sha256 over the parts of a device that do not change between runs."""
    parts = {"cpu": cpu, "cpus": cpus, "memory_gib": round(mem_mb / 1024), "os": os_name, "arch": arch,
             "accelerators": list(accel), "board": board}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(name: str | None = None) -> DeviceInfo:
    """This machine's fingerprint; ``name`` defaults to the hostname."""
    if name is not None and not name.strip():
        raise BadInput("--device: the device name is empty")
    cpu, cpus, mem = cpu_model(), os.cpu_count() or 1, memory_mb()
    os_name, arch = platform.system(), platform.machine()
    accel, board = accelerators(), board_model()
    return DeviceInfo(id=stable_id(cpu, cpus, mem, os_name, arch, accel, board),
                      name=(name or socket.gethostname() or "unknown").strip(), cpu_model=cpu, cpus=cpus,
                      isa=isa_flags(arch=arch), memory_mb=mem, os=os_name, os_release=platform.release(),
                      arch=arch, accelerators=accel, board=board, runtimes=runtime_versions(),
                      python=platform.python_version())
