"""What this machine is: CPU, ISA features, RAM, GPUs, power, heat, memory bandwidth.

Every probe degrades to None: a missing /proc/cpuinfo, no nvidia-smi, no battery or
sensors psutil cannot read leave their fields None and never raise. Only
`measure_bandwidth_gbps` takes noticeable time (under ~2 s); the rest is a few ms,
plus nvidia-smi when it exists (bounded by a 5 s timeout).

The fingerprint (`hardware_fingerprint`) is the key under which model profiles are
stored: it changes when the CPU, core count, ISA, installed RAM or GPUs change, and
not when load, free memory, battery or temperature do.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

__all__ = [
    "CpuInfo",
    "GpuInfo",
    "HardwareProfile",
    "collect_hardware",
    "parse_cpuinfo",
    "parse_nvidia_smi",
    "hardware_fingerprint",
    "measure_bandwidth_gbps",
]

T = TypeVar("T")

# x86 flags llama.cpp's CPU kernels dispatch on (ggml-cpu), as /proc/cpuinfo spells them.
X86_FLAGS = ("avx", "avx2", "avx_vnni", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vbmi",
             "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
# ARM "Features" words -> the names llama.cpp uses (asimd is NEON on aarch64; asimddp is DOTPROD).
ARM_FEATURES = {"neon": "neon", "asimd": "neon", "asimdhp": "fp16", "asimddp": "dotprod", "i8mm": "i8mm",
                "sve": "sve", "sve2": "sve2", "bf16": "bf16"}
_ARM_ORDER = ("neon", "fp16", "dotprod", "i8mm", "sve", "sve2", "bf16")
# Keys that name the CPU, most specific first: x86 "model name"; older ARM kernels
# "Processor" (capitalised; x86's lowercase "processor" is an index); boards "Model"/"Hardware";
# MIPS "cpu model"; POWER "cpu".
_MODEL_KEYS = ("model name", "Processor", "cpu model", "Model", "Hardware", "cpu")

NVIDIA_SMI_QUERY = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
PROBE_TIMEOUT_S = 5.0  # nvidia-smi, sysctl: a hung driver must not hang the profile
BANDWIDTH_BUFFER_BYTES = 256 << 20  # far beyond any L3 cache, so the copy streams from DRAM
BANDWIDTH_MAX_S = 1.5               # the repeats stop here; allocation and warm-up come on top


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says: the CPU's name and the ISA features llama.cpp uses.

    `isa` is None when the text has no flags/Features line (unknown), and an empty
    tuple when it has one but none of the features we look for.
    """

    model: str | None
    isa: tuple[str, ...] | None


@dataclass(frozen=True)
class GpuInfo:
    """One line of nvidia-smi: name, total memory in MiB (None if unparsable), driver version."""

    name: str
    memory_total_mib: int | None
    driver_version: str


@dataclass(frozen=True)
class HardwareProfile:
    """This machine, as measured now. Fields psutil or the OS cannot provide are None.

    Units: bytes for RAM, GB/s (1e9 bytes per second, read + write counted) for
    `bandwidth_gbps`, percent for the battery, degrees Celsius for temperatures.
    `gpus` is None when nvidia-smi is absent or failed, [] when it lists none.
    """

    fingerprint: str
    platform: str
    machine: str
    cpu_model: str | None
    physical_cores: int | None
    logical_cores: int | None
    isa: tuple[str, ...] | None
    ram_total_bytes: int | None
    ram_available_bytes: int | None
    llama_gpu_offload: bool | None
    llama_system_info: str | None
    gpus: tuple[GpuInfo, ...] | None
    battery_percent: float | None
    battery_plugged: bool | None
    temperature_max_c: float | None
    temperature_high: bool | None
    bandwidth_gbps: float | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["isa"] = list(self.isa) if self.isa is not None else None
        d["gpus"] = [asdict(g) for g in self.gpus] if self.gpus is not None else None
        return d


def _probe(fn: Callable[[], T]) -> T | None:
    """fn(), or None if it raises. Sensor and OS probes fail in too many ways to list
    (psutil raises NotImplementedError, RuntimeError, OSError, AttributeError by platform);
    a missing reading must never stop a profile."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - see docstring
        return None


# -- CPU ---------------------------------------------------------------------------------

def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse /proc/cpuinfo text (x86 "flags" or ARM "Features"); pure, never raises.

    The first processor's lines are used. ISA names are returned in a fixed order
    (X86_FLAGS, then neon/fp16/dotprod/i8mm/sve/sve2/bf16), de-duplicated.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key and key not in fields:
            fields[key] = value.strip()
    model = next((fields[k] for k in _MODEL_KEYS if fields.get(k) and not fields[k].isdigit()), None)
    if model is None and "CPU implementer" in fields and "CPU part" in fields:
        model = f"ARM implementer {fields['CPU implementer']} part {fields['CPU part']}"
    isa: tuple[str, ...] | None = None
    if "flags" in fields:
        words = set(fields["flags"].split())
        isa = tuple(f for f in X86_FLAGS if f in words)
    elif "Features" in fields:
        found = {ARM_FEATURES[w] for w in fields["Features"].split() if w in ARM_FEATURES}
        isa = tuple(f for f in _ARM_ORDER if f in found)
    return CpuInfo(model=model, isa=isa)


def _darwin_cpu_model() -> str | None:
    out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                         timeout=PROBE_TIMEOUT_S, check=False)
    return out.stdout.strip() or None


def _cpu_info(cpuinfo_path: Path) -> CpuInfo:
    text = _probe(lambda: cpuinfo_path.read_text(encoding="utf-8", errors="replace"))
    info = parse_cpuinfo(text) if text else CpuInfo(model=None, isa=None)
    if info.model is None:
        model = _probe(_darwin_cpu_model) if sys.platform == "darwin" else None
        info = CpuInfo(model=model or platform.processor() or None, isa=info.isa)
    return info


# -- GPUs --------------------------------------------------------------------------------

def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Parse `nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader`.

    One GPU per line, e.g. "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54.15". Lines
    that do not have three fields are skipped; pure, never raises.
    """
    gpus = []
    for line in text.splitlines():
        # rsplit: a GPU name could contain a comma; the other two fields cannot.
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[0]:
            continue
        mem = parts[1].split()
        mib = int(mem[0]) if mem and mem[0].isdigit() else None
        gpus.append(GpuInfo(name=parts[0], memory_total_mib=mib, driver_version=parts[2]))
    return gpus


def _nvidia_gpus() -> tuple[GpuInfo, ...] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    # nvidia-smi exits non-zero when the driver is not loaded: we know nothing, not "no GPUs".
    return tuple(parse_nvidia_smi(out.stdout)) if out.returncode == 0 else None


def _llama_gpu_offload() -> bool | None:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def _llama_system_info() -> str | None:
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    return raw.decode("utf-8", errors="replace").strip() if raw else None


# -- power and heat ---------------------------------------------------------------------------

def _battery() -> tuple[float | None, bool | None]:
    batt = _probe(psutil.sensors_battery) if hasattr(psutil, "sensors_battery") else None
    if batt is None:
        return None, None
    return float(batt.percent), (bool(batt.power_plugged) if batt.power_plugged is not None else None)


def _temperatures() -> tuple[float | None, bool | None]:
    """(hottest current reading in °C, whether any sensor is at/above its own `high`)."""
    temps = _probe(psutil.sensors_temperatures) if hasattr(psutil, "sensors_temperatures") else None
    readings = [t for entries in (temps or {}).values() for t in entries if t.current is not None]
    if not readings:
        return None, None
    hottest = max(float(t.current) for t in readings)
    hot = any(t.high is not None and t.high > 0 and t.current >= t.high for t in readings)
    return hottest, hot


# -- memory bandwidth -------------------------------------------------------------------------

def measure_bandwidth_gbps(size_bytes: int = BANDWIDTH_BUFFER_BYTES, max_s: float = BANDWIDTH_MAX_S,
                           repeats: int = 5) -> float | None:
    """Best-of-`repeats` numpy copy bandwidth in GB/s (1e9 B/s), counting read + write bytes.

    One thread copies one buffer into another; the buffer is shrunk when free RAM is
    short (to at most 1/8 of available, at least 32 MiB). Repeats stop after `max_s`;
    with allocation and a warm-up copy (page faults excluded from the timing) the whole
    call stays under ~2 s for the default 256 MiB. A single thread may not saturate
    DRAM on a many-core server, so this is a lower bound there. None if numpy is
    missing or the buffers cannot be allocated.
    """
    try:
        import numpy as np
    except ImportError:
        return None
    avail = _probe(lambda: psutil.virtual_memory().available)
    if avail:
        size_bytes = max(32 << 20, min(size_bytes, avail // 8))
    try:
        src = np.ones(size_bytes, dtype=np.uint8)  # ones, not empty: every page is really mapped
        dst = np.empty_like(src)
    except MemoryError:
        return None
    np.copyto(dst, src)  # warm-up: fault in dst's pages outside the timed copies
    best = float("inf")
    stop_at = time.perf_counter() + max_s
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() >= stop_at:
            break
    return 2 * size_bytes / best / 1e9 if best > 0 else None


# -- fingerprint ------------------------------------------------------------------------------

def hardware_fingerprint(cpu_model: str | None, logical_cores: int | None, isa: Iterable[str] | None,
                         ram_total_bytes: int | None, gpu_names: Iterable[str] | None) -> str:
    """16 hex digits of sha256 over the hardware that decides model speed; pure.

    RAM is rounded to whole GiB so that the kernel's varying reservations do not
    change the key; ISA flags and GPU names are sorted so their order does not.
    """
    key = {
        "cpu": cpu_model or "",
        "logical_cores": logical_cores or 0,
        "isa": sorted(set(isa or ())),
        "ram_gib": round((ram_total_bytes or 0) / 2**30),
        "gpus": sorted(gpu_names or ()),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def collect_hardware(*, bandwidth: bool = True, cpuinfo_path: Path = Path("/proc/cpuinfo")) -> HardwareProfile:
    """Probe this machine; never raises. `bandwidth=False` skips the ~1-2 s copy test
    (the fingerprint does not depend on it)."""
    cpu = _cpu_info(cpuinfo_path)
    vm = _probe(psutil.virtual_memory)
    gpus = _probe(_nvidia_gpus)
    battery_percent, plugged = _battery()
    temp_max, temp_high = _temperatures()
    logical = _probe(lambda: psutil.cpu_count(logical=True)) or os.cpu_count()
    return HardwareProfile(
        fingerprint=hardware_fingerprint(cpu.model, logical, cpu.isa, vm.total if vm else None,
                                         [g.name for g in gpus or ()]),
        platform=sys.platform,
        machine=platform.machine(),
        cpu_model=cpu.model,
        physical_cores=_probe(lambda: psutil.cpu_count(logical=False)),
        logical_cores=logical,
        isa=cpu.isa,
        ram_total_bytes=vm.total if vm else None,
        ram_available_bytes=vm.available if vm else None,
        llama_gpu_offload=_probe(_llama_gpu_offload),
        llama_system_info=_probe(_llama_system_info),
        gpus=gpus,
        battery_percent=battery_percent,
        battery_plugged=plugged,
        temperature_max_c=temp_max,
        temperature_high=temp_high,
        bandwidth_gbps=_probe(measure_bandwidth_gbps) if bandwidth else None,
    )
